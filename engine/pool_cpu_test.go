package engine_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// The vectorised 2×2 max pool (eight outputs at a time, rows of 16 outputs
// and more, rows of fewer than eight under lane masks) picks what the ordered
// float64 loop picks: ties to the first, −0 and +0 tied, infinities, and a
// NaN anywhere in a row.
func TestMaxPool2x2VectorPicksLikeFloat64(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 17))
	vals := []float64{0, math.Copysign(0, -1), 1, -1, 2, math.Inf(1), math.Inf(-1), -2}
	for _, w := range []int{32, 37, 34, 66, 2, 10, 15, 9} {
		x64 := engine.New(engine.Float64, 2, 3, 5, w)
		for i := range x64.Float64() {
			x64.Float64()[i] = vals[rng.IntN(len(vals))]
		}
		for round := 0; round < 3; round++ {
			switch round {
			case 1:
				x64.Float64()[5*w+w+3] = math.NaN() // inside the vector part
			case 2:
				x64.Float64()[2*5*w+w-1] = math.NaN() // in the dropped last column of an odd width
			}
			p := engine.Pool2DSquare(2, 0, 0)
			os, _ := engine.Pool2DOutputShape(x64.Shape(), p)
			var outs [2][]float64
			var ams [2][]int32
			for k, dt := range []engine.DType{engine.Float64, engine.Float32} {
				out := engine.New(dt, os...)
				ams[k] = make([]int32, out.Len())
				if err := engine.MaxPool2DForward(out, ams[k], x64.As(dt), p); err != nil {
					t.Fatal(err)
				}
				outs[k] = out.Values()
				noAm := engine.New(dt, os...)
				if err := engine.MaxPool2DForward(noAm, nil, x64.As(dt), p); err != nil {
					t.Fatal(err)
				}
				for i, v := range noAm.Values() {
					if math.Float64bits(v) != math.Float64bits(outs[k][i]) && !(v != v && outs[k][i] != outs[k][i]) {
						t.Fatalf("w %d round %d %v element %d: %v without argmax, %v with", w, round, dt, i, v, outs[k][i])
					}
				}
			}
			for i := range ams[0] {
				a, b := outs[0][i], outs[1][i]
				if ams[0][i] != ams[1][i] || math.Float64bits(a) != math.Float64bits(b) && !(a != a && b != b) {
					t.Fatalf("w %d round %d element %d: float64 picks %v at %d, float32 %v at %d",
						w, round, i, a, ams[0][i], b, ams[1][i])
				}
			}
		}
	}
}
