//go:build !cgo || !amd64

package engine

func channelPoolForwardC[T Float](out []T, argmax []int32, x []T, n, c, hw int) bool { return false }

func channelPoolBackwardC[T Float](dx, dout []T, argmax []int32, n, c, hw int) bool { return false }

func globalMaxForwardC[T Float](out []T, argmax []int32, x []T, hw int) bool { return false }

func transpose12C[T Float](out, x []T, n, a, b int) bool { return false }

func channelGateBackwardC[T Float](dx, dout, scale, dAvg, dMax []T, argmax []int32, hw int) bool {
	return false
}

func spatialGateBackwardC[T Float](dx, dout, att, dPooled []T, argmax []int32, n, c, hw int) bool {
	return false
}
