package engine_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// MaxPool2DReLUForward and MaxPool2DReLUBackward give the bits of ReLU then
// max pool run one after the other (ties, zeros, all-negative windows and NaN
// included), in float32 at every ISA level and in float64: 2×2 pools on rows
// narrower and wider than a vector, odd sizes, and overlapping and padded
// windows.
func TestMaxPoolReLUIsReLUThenMaxPool(t *testing.T) {
	defer restoreISA(t)()
	cases := []struct {
		shape []int
		p     engine.Pool2DParams
	}{
		{[]int{2, 3, 28, 28}, engine.Pool2DSquare(2, 2, 0)},
		{[]int{2, 2, 10, 10}, engine.Pool2DSquare(2, 2, 0)},
		{[]int{1, 2, 7, 33}, engine.Pool2DSquare(2, 2, 0)},
		{[]int{1, 1, 4, 40}, engine.Pool2DSquare(2, 2, 0)},
		{[]int{3, 2, 5, 5}, engine.Pool2DSquare(2, 2, 0)},
		{[]int{2, 3, 9, 11}, engine.Pool2DSquare(3, 1, 1)},
		{[]int{2, 2, 9, 9}, engine.Pool2DSquare(3, 2, 0)},
	}
	for _, level := range engine.CPUISAs() {
		opsMust(t, engine.SetCPUISA(level))
		for i, c := range cases {
			rng := rand.New(rand.NewPCG(61, uint64(i)))
			os, err := engine.Pool2DOutputShape(c.shape, c.p)
			opsMust(t, err)
			x, dout := gradcheck.Rand(rng, -2, 1, c.shape...), gradcheck.Rand(rng, -1, 1, os...)
			xs := x.Float64()
			xs[2], xs[3], xs[7] = 0, xs[2], 0.5 // ties of zeros
			xs[9] = xs[8]                       // a tie
			for round := 0; round < 2; round++ {
				if round == 1 {
					xs[len(xs)/2] = math.NaN()
				}
				for _, dt := range []engine.DType{engine.Float32, engine.Float64} {
					want, got := reluThenPool(t, dt, x, dout, c.p, false), reluThenPool(t, dt, x, dout, c.p, true)
					for k, name := range []string{"out", "dx"} {
						if !bitsEqual(got[k], want[k]) {
							t.Errorf("%s %v %v %v round %d %s: fused and separate ops differ", level, c.shape, c.p, dt,
								round, name)
						}
					}
				}
			}
		}
	}
}

// reluThenPool runs ReLU and max pool forward and backward, fused or one
// after the other, and returns out and dx. dx starts as garbage: both
// backward passes overwrite all of it.
func reluThenPool(t *testing.T, dt engine.DType, x, dout *engine.Tensor, p engine.Pool2DParams, fused bool) []*engine.Tensor {
	xd, dy := x.As(dt), dout.As(dt)
	out, dx := engine.New(dt, dout.Shape()...), engine.New(dt, x.Shape()...)
	opsMust(t, dx.Fill(7))
	am := make([]int32, out.Len())
	if fused {
		opsMust(t, engine.MaxPool2DReLUForward(out, am, xd, p))
		opsMust(t, engine.MaxPool2DReLUBackward(dx, dy, out, am, p))
		return []*engine.Tensor{out, dx}
	}
	r, dr := engine.New(dt, x.Shape()...), engine.New(dt, x.Shape()...)
	opsMust(t, engine.ActivationForward(r, xd, engine.ReLU))
	opsMust(t, engine.MaxPool2DForward(out, am, r, p))
	opsMust(t, engine.MaxPool2DBackward(dr, dy, am, p))
	opsMust(t, engine.ActivationBackward(dx, dr, nil, r, engine.ReLU))
	return []*engine.Tensor{out, dx}
}

// The one-pass 2×2 backward writes what the scatter writes, also for indices
// that are not their window's (it hands the plane back to the scatter), and
// an index outside the plane is an error.
func TestMaxPool2x2BackwardIndicesOutsideTheirWindow(t *testing.T) {
	p := engine.Pool2DSquare(2, 2, 0)
	rng := rand.New(rand.NewPCG(62, 1))
	dout := gradcheck.Rand(rng, -1, 1, 1, 2, 3, 3)
	am := make([]int32, dout.Len())
	for i := range am {
		oh, ow := i%9/3, i%3
		am[i] = int32(2*oh*7 + 2*ow + 7) // row 2·oh+1, column 2·ow: in the window
	}
	am[4] = 0 // plane 0's centre window points at the plane's corner
	var dx [2]*engine.Tensor
	for k, dt := range []engine.DType{engine.Float64, engine.Float32} {
		dx[k] = engine.New(dt, 1, 2, 7, 7)
		opsMust(t, dx[k].Fill(3))
		opsMust(t, engine.MaxPool2DBackward(dx[k], dout.As(dt), am, p))
	}
	for i, v := range dx[0].Values() {
		if float64(float32(v)) != dx[1].Values()[i] {
			t.Fatalf("element %d: float32 (one pass, then scatter) gives %v, float64 (scatter) %v", i, dx[1].Values()[i], v)
		}
	}
	if dx[0].Values()[0] == 0 || dx[0].Values()[6] != 0 || dx[0].Values()[48] != 0 {
		t.Fatalf("dx %v: want the corner's gradient, zeros in the uncovered column and row", dx[0].Values()[:7])
	}
	am[5] = 49
	opsShapeError(t, engine.MaxPool2DBackward(dx[1], dout.As(engine.Float32), am, p), "MaxPool2DBackward")
}

// The float32 max pool backward of every geometry but the 2×2 against the
// plain float32 scatter, dx[argmax[o]] += dout[o] in output order, bit for bit:
// with and without the fused ReLU's mask, over −0, ±Inf and NaN gradients,
// on poolPlanes, at every ISA level. Argmax
// comes from a real forward pass, so neighbouring windows share maxima.
func TestMaxPoolBackwardIsTheOrderedScatter(t *testing.T) {
	atEveryISALevel(t, maxPoolBackwardIsTheOrderedScatter)
}

func maxPoolBackwardIsTheOrderedScatter(t *testing.T) {
	rng := rand.New(rand.NewPCG(63, 2))
	grads := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 0.5, -3, float32(math.Inf(1)), float32(math.Inf(-1))}
	for _, c := range poolPlanes {
		x := engine.New(engine.Float32, 2, 3, c.h, c.w)
		for i := range x.Float32() {
			x.Float32()[i] = float32(rng.IntN(7)) - 3 // ties, and windows that share their maximum
		}
		os, err := engine.Pool2DOutputShape(x.Shape(), c.p)
		opsMust(t, err)
		out, am := engine.New(engine.Float32, os...), make([]int32, engine.New(engine.Float32, os...).Len())
		opsMust(t, engine.MaxPool2DReLUForward(out, am, x, c.p))
		dout := engine.New(engine.Float32, os...)
		for i := range dout.Float32() {
			dout.Float32()[i] = rng.Float32()*2 - 1 // sums that round: their order shows
			if rng.IntN(4) == 0 {
				dout.Float32()[i] = grads[rng.IntN(len(grads))]
			}
		}
		dout.Float32()[rng.IntN(dout.Len())] = float32(math.NaN())
		if c.h == 16 { // an index inside the plane but outside its window is still the scatter's
			am[len(am)-1] = 0
		}
		for _, relu := range []bool{false, true} {
			dx := engine.New(engine.Float32, x.Shape()...)
			opsMust(t, dx.Fill(7))
			if relu {
				opsMust(t, engine.MaxPool2DReLUBackward(dx, dout, out, am, c.p))
			} else {
				opsMust(t, engine.MaxPool2DBackward(dx, dout, am, c.p))
			}
			in, on := c.h*c.w, os[2]*os[3]
			want := make([]float32, dx.Len())
			for o, g := range dout.Float32() {
				if !relu || out.Float32()[o] > 0 {
					want[o/on*in+int(am[o])] += g
				}
			}
			for i, v := range dx.Float32() {
				if math.Float32bits(v) != math.Float32bits(want[i]) && !(v != v && want[i] != want[i]) {
					t.Fatalf("%dx%d %+v relu %v: dx[%d] = %v, the ordered scatter gives %v", c.h, c.w, c.p, relu, i, v, want[i])
				}
			}
		}
	}
}
