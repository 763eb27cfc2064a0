package engine_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// Every CPU pooling path against Pool2DReference: float64 runs the ordered
// plane loops (maxPlane; avgPlane2x2 for 2×2 stride-2 average), float32 the branch-free
// Go loops or, built with cgo on amd64, the C 2×2 kernel (run the test with
// CGO_ENABLED=0 too for the portable path). The shapes are awkward on
// purpose: planes of one element, odd sides that floor mode cuts, widths
// around the C kernel's 8- and 16-output steps and below them, padding, overlapping windows,
// and one batch large enough to be split over the workers. Inputs are small
// integers, so windows hold ties and max must pick the first. Max's output is
// exact in both dtypes; sums (average, and max's dx where windows overlap)
// are within 1e-6 relative in float32 (at most KH·KW float32 terms), 1e-12
// in float64.
var poolRefCases = []struct {
	n, c, h, w int
	p          engine.Pool2DParams
}{
	{1, 1, 1, 1, engine.Pool2DSquare(1, 1, 0)},
	{2, 3, 5, 7, engine.Pool2DSquare(2, 0, 0)},
	{1, 2, 4, 33, engine.Pool2DSquare(2, 0, 0)},
	{2, 1, 3, 35, engine.Pool2DSquare(2, 0, 0)},
	{1, 3, 2, 50, engine.Pool2DSquare(2, 0, 0)},
	{2, 2, 7, 9, engine.Pool2DSquare(3, 2, 1)},
	{1, 3, 6, 5, engine.Pool2DSquare(3, 1, 1)},
	{2, 2, 5, 1, engine.Pool2DParams{KernelH: 3, KernelW: 1, StrideH: 1, StrideW: 1, PadH: 1}},
	{1, 2, 4, 6, engine.Pool2DParams{KernelH: 2, KernelW: 3, StrideH: 1, StrideW: 2}},
	{64, 6, 28, 28, engine.Pool2DSquare(2, 0, 0)},
	// rows narrower than the 8-output step: LeNet's 10×10 planes, one to seven outputs
	{8, 16, 10, 10, engine.Pool2DSquare(2, 0, 0)},
	{1, 2, 4, 2, engine.Pool2DSquare(2, 0, 0)},
	{2, 2, 6, 15, engine.Pool2DSquare(2, 0, 0)},
	{1, 3, 4, 8, engine.Pool2DSquare(2, 0, 0)},
	{1, 2, 4, 22, engine.Pool2DSquare(2, 0, 0)},
}

func poolRefInput(rng *rand.Rand, shape ...int) *engine.Tensor {
	x := engine.New(engine.Float64, shape...)
	for i := range x.Float64() {
		x.Float64()[i] = float64(rng.IntN(5) - 2)
	}
	return x
}

func TestPool2DMatchesReference(t *testing.T) {
	for i, c := range poolRefCases {
		for _, isMax := range []bool{true, false} {
			name := fmt.Sprintf("%dx%dx%dx%d%v/max=%v", c.n, c.c, c.h, c.w, c.p, isMax)
			t.Run(name, func(t *testing.T) {
				rng := rand.New(rand.NewPCG(41, uint64(i)))
				x := poolRefInput(rng, c.n, c.c, c.h, c.w)
				os, err := engine.Pool2DOutputShape(x.Shape(), c.p)
				opsMust(t, err)
				dout := gradcheck.Rand(rng, -1, 1, os...)
				want, wantDx, err := engine.Pool2DReference(x, dout, c.p, isMax)
				opsMust(t, err)
				for _, dt := range []engine.DType{engine.Float64, engine.Float32} {
					outTol, dxTol := 1e-12, 1e-12
					if dt == engine.Float32 {
						outTol, dxTol = 1e-6, 1e-6
					}
					if isMax {
						outTol = 0
					}
					out, dx := engine.New(dt, os...), engine.New(dt, x.Shape()...)
					if isMax {
						argmax := make([]int32, out.Len())
						opsMust(t, engine.MaxPool2DForward(out, argmax, x.As(dt), c.p))
						opsMust(t, engine.MaxPool2DBackward(dx, dout.As(dt), argmax, c.p))
					} else {
						opsMust(t, engine.AvgPool2DForward(out, x.As(dt), c.p))
						opsMust(t, engine.AvgPool2DBackward(dx, dout.As(dt), c.p))
					}
					// dout.As(Float32) rounds; the reference saw float64.
					doutDt := dout.As(dt).As(engine.Float64)
					_, wantDxDt, err := engine.Pool2DReference(x, doutDt, c.p, isMax)
					opsMust(t, err)
					if msg := gradcheck.Close(out.Values(), want, outTol, outTol); msg != "" {
						t.Errorf("%v out: %s", dt, msg)
					}
					if msg := gradcheck.Close(dx.Values(), wantDxDt, dxTol, dxTol); msg != "" {
						t.Errorf("%v dx: %s", dt, msg)
					}
				}
				if len(wantDx) != x.Len() {
					t.Fatalf("reference dx has %d elements, want %d", len(wantDx), x.Len())
				}
			})
		}
	}
}

// The global average pool is the average pool whose window is the plane.
func TestGlobalAvgPoolMatchesReference(t *testing.T) {
	for i, s := range [][4]int{{1, 1, 1, 1}, {2, 3, 5, 7}, {3, 2, 1, 9}, {64, 8, 8, 8}} {
		rng := rand.New(rand.NewPCG(42, uint64(i)))
		x := gradcheck.Rand(rng, -1, 1, s[:]...)
		dout := gradcheck.Rand(rng, -1, 1, s[0], s[1], 1, 1)
		p := engine.Pool2DParams{KernelH: s[2], KernelW: s[3]}
		want, wantDx, err := engine.Pool2DReference(x, dout, p, false)
		opsMust(t, err)
		for _, dt := range []engine.DType{engine.Float64, engine.Float32} {
			tol := 1e-12
			if dt == engine.Float32 {
				tol = 1e-6
			}
			out, dx := engine.New(dt, s[0], s[1], 1, 1), engine.New(dt, s[:]...)
			opsMust(t, engine.GlobalAvgPoolForward(out, x.As(dt)))
			opsMust(t, engine.GlobalAvgPoolBackward(dx, dout.As(dt)))
			if msg := gradcheck.Close(out.Values(), want, tol, tol); msg != "" {
				t.Errorf("%v %v out: %s", s, dt, msg)
			}
			if msg := gradcheck.Close(dx.Values(), wantDx, tol, tol); msg != "" {
				t.Errorf("%v %v dx: %s", s, dt, msg)
			}
		}
	}
}
