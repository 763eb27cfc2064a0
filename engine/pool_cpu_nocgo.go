//go:build !cgo || !amd64

package engine

func maxPool2x2C(out []float32, am []int32, x []float32, g *poolGeom, planes int, relu bool) int {
	return 0
}

func maxPool2x2BackwardC(dx, dout, keep []float32, am []int32, g *poolGeom, planes int) int { return 0 }

const havePoolC = false

func maxPoolC(out []float32, am []int32, x []float32, work []int64, g *poolGeom, planes int, relu bool) int {
	return 0
}

func avgPoolC(a, b, work []float32, g *poolGeom, planes int, backward bool) {}
