//go:build !cgo || !amd64

package engine

func maxPlane2x2C(out []float32, am []int32, x []float32, g *poolGeom) bool { return false }

const haveMaxPool2x2C = false
