//go:build !cgo || !amd64

package engine

func sguGateC[T Float](out, vm, z, b []T, t, d int) bool { return false }

func sguGateBackwardC[T Float](dvm, dz []T, db []float64, dout, z, vm []T, t, d int) bool {
	return false
}
