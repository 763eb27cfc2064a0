package engine_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

type poolCase struct {
	name       string
	n, c, h, w int
	p          engine.Pool2DParams
}

var poolCases = []poolCase{
	{"2x2", 2, 3, 6, 4, engine.Pool2DSquare(2, 0, 0)},
	{"2x2-odd-input", 1, 5, 7, 5, engine.Pool2DSquare(2, 0, 0)},
	{"3x3-stride2-pad1", 2, 3, 7, 6, engine.Pool2DSquare(3, 2, 1)},
	{"3x3-stride1-pad1", 1, 2, 5, 5, engine.Pool2DSquare(3, 1, 1)},
	{"overlapping-3x3-stride2", 2, 2, 7, 7, engine.Pool2DSquare(3, 2, 0)},
	{"rect", 3, 2, 7, 9, engine.Pool2DParams{KernelH: 2, KernelW: 3, StrideH: 1, StrideW: 2, PadW: 1}},
	{"window-is-input", 2, 3, 4, 3, engine.Pool2DParams{KernelH: 4, KernelW: 3}},
}

func (c poolCase) outShape(t *testing.T) []int {
	s, err := engine.Pool2DOutputShape([]int{c.n, c.c, c.h, c.w}, c.p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// distinct returns a tensor of the given shape whose values are a shuffle of
// distinct numbers 0.01 apart, so a finite-difference step never changes
// which element of a max-pool window wins.
func distinct(rng *rand.Rand, shape ...int) *engine.Tensor {
	t := engine.New(engine.Float64, shape...)
	v := t.Float64()
	for i := range v {
		v[i] = float64(i)*0.01 - 1
	}
	rng.Shuffle(len(v), func(i, j int) { v[i], v[j] = v[j], v[i] })
	return t
}

func TestGradientMaxPool2D(t *testing.T) {
	for i, c := range poolCases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(10, uint64(i)))
			x := distinct(rng, c.n, c.c, c.h, c.w)
			os := c.outShape(t)
			out, dx := engine.New(engine.Float64, os...), engine.New(engine.Float64, x.Shape()...)
			argmax := make([]int32, out.Len())
			gradcheck.Check(t, []*engine.Tensor{x},
				func() (*engine.Tensor, error) { return out, engine.MaxPool2DForward(out, argmax, x, c.p) },
				func(dy *engine.Tensor) ([]*engine.Tensor, error) {
					return []*engine.Tensor{dx}, engine.MaxPool2DBackward(dx, dy, argmax, c.p)
				}, gradcheck.Options{Names: []string{"x"}})
		})
	}
}

func TestGradientAvgPool2D(t *testing.T) {
	for i, c := range poolCases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(11, uint64(i)))
			x := gradcheck.Rand(rng, -1, 1, c.n, c.c, c.h, c.w)
			out, dx := engine.New(engine.Float64, c.outShape(t)...), engine.New(engine.Float64, x.Shape()...)
			gradcheck.Check(t, []*engine.Tensor{x},
				func() (*engine.Tensor, error) { return out, engine.AvgPool2DForward(out, x, c.p) },
				func(dy *engine.Tensor) ([]*engine.Tensor, error) {
					return []*engine.Tensor{dx}, engine.AvgPool2DBackward(dx, dy, c.p)
				}, gradcheck.Options{Names: []string{"x"}})
		})
	}
}

func TestGradientGlobalAvgPool(t *testing.T) {
	for i, s := range [][]int{{2, 3, 5, 7}, {1, 5, 1, 1}, {3, 2, 4, 4}} {
		rng := rand.New(rand.NewPCG(12, uint64(i)))
		x := gradcheck.Rand(rng, -1, 1, s...)
		out, dx := engine.New(engine.Float64, s[0], s[1]), engine.New(engine.Float64, s...)
		if i == 2 {
			out = engine.New(engine.Float64, s[0], s[1], 1, 1)
		}
		gradcheck.Check(t, []*engine.Tensor{x},
			func() (*engine.Tensor, error) { return out, engine.GlobalAvgPoolForward(out, x) },
			func(dy *engine.Tensor) ([]*engine.Tensor, error) {
				return []*engine.Tensor{dx}, engine.GlobalAvgPoolBackward(dx, dy)
			}, gradcheck.Options{Names: []string{"x"}})
	}
}

// The gradient checks' shapes (distinct values, so no ties) in both dtypes,
// forward and backward against Pool2DReference; pool_ref_test.go holds the
// awkward shapes, the ties, the global pool and a batch split over workers.
func TestPool2DGradientCasesMatchReference(t *testing.T) {
	for i, c := range poolCases {
		rng := rand.New(rand.NewPCG(13, uint64(i)))
		x64 := distinct(rng, c.n, c.c, c.h, c.w)
		os := c.outShape(t)
		dout64 := gradcheck.Rand(rng, -1, 1, os...)
		for _, isMax := range []bool{true, false} {
			for _, dt := range []engine.DType{engine.Float64, engine.Float32} {
				// The reference reads the inputs as rounded to dt.
				x, dout := x64.As(dt), dout64.As(dt)
				want, wantDx, err := engine.Pool2DReference(x, dout, c.p, isMax)
				if err != nil {
					t.Fatal(err)
				}
				out, dx := engine.New(dt, os...), engine.New(dt, x.Shape()...)
				dx.Fill(math.NaN()) // must be overwritten
				if isMax {
					argmax := make([]int32, out.Len())
					if err = engine.MaxPool2DForward(out, argmax, x, c.p); err == nil {
						err = engine.MaxPool2DBackward(dx, dout, argmax, c.p)
					}
				} else if err = engine.AvgPool2DForward(out, x, c.p); err == nil {
					err = engine.AvgPool2DBackward(dx, dout, c.p)
				}
				if err != nil {
					t.Fatal(err)
				}
				tol := 1e-12
				if dt == engine.Float32 {
					tol = 1e-6
				}
				if msg := gradcheck.Close(out.Values(), want, tol, tol); msg != "" {
					t.Errorf("%s max=%v %v forward: %s", c.name, isMax, dt, msg)
				}
				if msg := gradcheck.Close(dx.Values(), wantDx, tol, tol); msg != "" {
					t.Errorf("%s max=%v %v backward: %s", c.name, isMax, dt, msg)
				}
			}
		}
	}
}

// Ties go to the first element of the window (−0 and +0 tie) and NaN
// propagates, as in PyTorch; padding never wins. Both dtypes: float32 2×2
// windows take a branch-free route of their own.
func TestMaxPool2DTiesAndNaN(t *testing.T) {
	negZero := math.Copysign(0, -1)
	for _, dt := range []engine.DType{engine.Float64, engine.Float32} {
		x := engine.New(dt, 1, 1, 2, 8)
		for i, v := range []float64{
			-5, -5, 1, 1, negZero, 0, 0, negZero,
			-5, -5, math.NaN(), 1, -1, -2, -3, -4,
		} {
			x.SetAt(i, v)
		}
		out := engine.New(dt, 1, 1, 1, 4)
		argmax := make([]int32, 4)
		if err := engine.MaxPool2DForward(out, argmax, x, engine.Pool2DSquare(2, 0, 0)); err != nil {
			t.Fatal(err)
		}
		o := out.Values()
		if o[0] != -5 || argmax[0] != 0 || !math.IsNaN(o[1]) || argmax[1] != 10 ||
			o[2] != 0 || !math.Signbit(o[2]) || argmax[2] != 4 || o[3] != 0 || math.Signbit(o[3]) || argmax[3] != 6 {
			t.Errorf("%v: out %v argmax %v, want [-5 NaN -0 0] [0 10 4 6]", dt, o, argmax)
		}
		// Without the NaN, float32 stays on its branch-free route.
		x.SetAt(10, 2)
		if err := engine.MaxPool2DForward(out, argmax, x, engine.Pool2DSquare(2, 0, 0)); err != nil {
			t.Fatal(err)
		}
		o = out.Values()
		if o[0] != -5 || argmax[0] != 0 || o[1] != 2 || argmax[1] != 10 ||
			o[2] != 0 || !math.Signbit(o[2]) || argmax[2] != 4 || o[3] != 0 || math.Signbit(o[3]) || argmax[3] != 6 {
			t.Errorf("%v: out %v argmax %v, want [-5 2 -0 0] [0 10 4 6]", dt, o, argmax)
		}
		neg := engine.New(dt, 1, 1, 2, 2)
		for i, v := range []float64{-3, -4, -5, -6} {
			neg.SetAt(i, v)
		}
		out = engine.New(dt, 1, 1, 2, 2)
		argmax = make([]int32, 4)
		if err := engine.MaxPool2DForward(out, argmax, neg, engine.Pool2DSquare(2, 2, 1)); err != nil {
			t.Fatal(err)
		}
		for i, v := range out.Values() {
			if v != neg.At(i) || int(argmax[i]) != i {
				t.Fatalf("%v: padded max pool of negatives: out %v argmax %v", dt, out.Values(), argmax)
			}
		}
	}
}

func TestPool2DDeterministicNoAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 15))
	x := randTensor(rng, engine.Float32, 64, 6, 28, 28)
	p := engine.Pool2DSquare(2, 0, 0)
	out, dx := engine.New(engine.Float32, 64, 6, 14, 14), engine.New(engine.Float32, 64, 6, 28, 28)
	g, gx := engine.New(engine.Float32, 64, 6), engine.New(engine.Float32, 64, 6, 28, 28)
	argmax := make([]int32, out.Len())
	step := func() {
		_ = engine.MaxPool2DForward(out, argmax, x, p)
		_ = engine.MaxPool2DBackward(dx, out, argmax, p)
		_ = engine.AvgPool2DForward(out, x, p)
		_ = engine.AvgPool2DBackward(dx, out, p)
		_ = engine.GlobalAvgPoolForward(g, x)
		_ = engine.GlobalAvgPoolBackward(gx, g)
	}
	step()
	first := [][]float32{append([]float32(nil), out.Float32()...), append([]float32(nil), dx.Float32()...),
		append([]float32(nil), g.Float32()...), append([]float32(nil), gx.Float32()...)}
	if a := testing.AllocsPerRun(10, step); a != 0 {
		t.Errorf("pooling allocates %v times per step", a)
	}
	for i, now := range [][]float32{out.Float32(), dx.Float32(), g.Float32(), gx.Float32()} {
		for j := range now {
			if math.Float32bits(now[j]) != math.Float32bits(first[i][j]) {
				t.Fatalf("result %d element %d differs between runs", i, j)
			}
		}
	}
}

func TestPool2DShapeErrors(t *testing.T) {
	f32 := func(s ...int) *engine.Tensor { return engine.New(engine.Float32, s...) }
	x, out := f32(2, 3, 8, 8), f32(2, 3, 4, 4)
	p := engine.Pool2DSquare(2, 0, 0)
	am := make([]int32, out.Len())
	wantShapeError(t, "MaxPool2DForward", engine.MaxPool2DForward(f32(2, 3, 5, 4), am, x, p))
	wantShapeError(t, "MaxPool2DForward", engine.MaxPool2DForward(out, am[:5], x, p))
	wantShapeError(t, "MaxPool2DForward", engine.MaxPool2DForward(out, am, f32(3, 8, 8), p))
	wantShapeError(t, "MaxPool2DForward", engine.MaxPool2DForward(out, am, x, engine.Pool2DSquare(2, 0, 2)))
	wantShapeError(t, "MaxPool2DForward", engine.MaxPool2DForward(out, am, x, engine.Pool2DParams{}))
	wantShapeError(t, "MaxPool2DForward", engine.MaxPool2DForward(out, am, nil, p))
	if err := engine.MaxPool2DForward(out, nil, x, p); err != nil {
		t.Fatalf("valid call refused: %v", err)
	}
	wantShapeError(t, "MaxPool2DBackward", engine.MaxPool2DBackward(f32(2, 3, 8, 7), out, am, p))
	wantShapeError(t, "MaxPool2DBackward", engine.MaxPool2DBackward(x, out, nil, p))
	bad := make([]int32, out.Len())
	bad[7] = 64
	wantShapeError(t, "MaxPool2DBackward", engine.MaxPool2DBackward(x, out, bad, p))
	wantShapeError(t, "AvgPool2DForward", engine.AvgPool2DForward(out, f32(2, 3, 1, 8), p))
	wantShapeError(t, "AvgPool2DForward", engine.AvgPool2DForward(out, engine.New(engine.Float64, 2, 3, 8, 8), p))
	wantShapeError(t, "AvgPool2DBackward", engine.AvgPool2DBackward(x, f32(2, 3, 4, 5), p))
	wantShapeError(t, "GlobalAvgPoolForward", engine.GlobalAvgPoolForward(f32(2, 4), x))
	wantShapeError(t, "GlobalAvgPoolForward", engine.GlobalAvgPoolForward(f32(2, 3, 1), x))
	wantShapeError(t, "GlobalAvgPoolBackward", engine.GlobalAvgPoolBackward(f32(2, 3, 8), f32(2, 3)))
	_, err := engine.Pool2DOutputShape([]int{1, 1, 3, 3}, engine.Pool2DSquare(5, 0, 0))
	wantShapeError(t, "Pool2DOutputShape", err)
	s, err := engine.Pool2DOutputShape([]int{1, 2, 7, 5}, engine.Pool2DSquare(3, 2, 1))
	if err != nil || s[2] != 4 || s[3] != 3 {
		t.Errorf("Pool2DOutputShape = %v, %v; want [1 2 4 3]", s, err)
	}
}

func TestPool2DEmpty(t *testing.T) {
	for _, dt := range []engine.DType{engine.Float32, engine.Float64} {
		x, out := engine.New(dt, 0, 3, 4, 4), engine.New(dt, 0, 3, 2, 2)
		p := engine.Pool2DSquare(2, 0, 0)
		for _, err := range []error{
			engine.MaxPool2DForward(out, []int32{}, x, p),
			engine.MaxPool2DBackward(x, out, []int32{}, p),
			engine.AvgPool2DForward(out, x, p),
			engine.AvgPool2DBackward(x, out, p),
			engine.GlobalAvgPoolForward(engine.New(dt, 0, 3), x),
			engine.GlobalAvgPoolBackward(x, engine.New(dt, 0, 3)),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// The float32 kernels (branch-free, keyed on the bits) pick exactly what the
// ordered float64 ones pick, on data full of ties, signed zeros, infinities
// and, in a second round, a NaN.
func TestMaxPool2DFloat32PicksLikeFloat64(t *testing.T) {
	atEveryISALevel(t, maxPoolFloat32PicksLikeFloat64)
}

func maxPoolFloat32PicksLikeFloat64(t *testing.T) {
	rng := rand.New(rand.NewPCG(16, 16))
	vals := []float64{0, math.Copysign(0, -1), 1, -1, 2, math.Inf(1), math.Inf(-1), -2}
	x64 := engine.New(engine.Float64, 2, 3, 7, 8)
	for i := range x64.Float64() {
		x64.Float64()[i] = vals[rng.IntN(len(vals))]
	}
	for round := 0; round < 2; round++ {
		if round == 1 {
			x64.Float64()[3*56+17] = math.NaN()
		}
		for _, p := range []engine.Pool2DParams{
			engine.Pool2DSquare(2, 0, 0),
			engine.Pool2DSquare(3, 1, 1),
			engine.Pool2DSquare(3, 2, 0),
			engine.Pool2DSquare(5, 1, 2),
			{KernelH: 2, KernelW: 3, StrideH: 1, StrideW: 2, PadW: 1},
		} {
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
			}
			for i := range ams[0] {
				a, b := outs[0][i], outs[1][i]
				if ams[0][i] != ams[1][i] || math.Float64bits(a) != math.Float64bits(b) && !(a != a && b != b) {
					t.Fatalf("round %d %v element %d: float64 picks %v at %d, float32 %v at %d",
						round, p, i, a, ams[0][i], b, ams[1][i])
				}
			}
		}
	}
}

// The general float32 average pool (C's two separable passes where built
// with cgo on amd64, the Go loops elsewhere) against the float64 reference
// at every ISA level, on windows, strides and paddings of every kind and
// widths around the 8- and 16-lane vector steps; and a window of −0s
// averages to +0, as PyTorch's sum from zero gives.
func TestAvgPool2DFloat32AtEveryISALevel(t *testing.T) {
	atEveryISALevel(t, avgPoolFloat32MatchesReference)
}

// poolPlanes are pooled planes of every kind for the float32 paths' tests:
// windows, strides and paddings, overlapping or not, and widths around the
// 8- and 16-lane vector steps.
var poolPlanes = []struct {
	h, w int
	p    engine.Pool2DParams
}{
	{32, 32, engine.Pool2DSquare(3, 1, 1)},
	{16, 16, engine.Pool2DSquare(3, 1, 1)},
	{9, 33, engine.Pool2DSquare(3, 1, 1)},
	{5, 17, engine.Pool2DSquare(3, 1, 0)},
	{7, 17, engine.Pool2DSquare(3, 2, 1)},
	{12, 40, engine.Pool2DSquare(5, 1, 2)},
	{11, 23, engine.Pool2DSquare(5, 3, 2)},
	{8, 8, engine.Pool2DSquare(4, 4, 0)},
	{6, 31, engine.Pool2DSquare(2, 1, 0)},
	{5, 16, engine.Pool2DSquare(1, 2, 0)},
	{3, 1, engine.Pool2DSquare(3, 1, 1)},
	{4, 19, engine.Pool2DParams{KernelH: 1, KernelW: 7, StrideH: 1, StrideW: 1, PadW: 3}},
	{13, 6, engine.Pool2DParams{KernelH: 3, KernelW: 2, StrideH: 2, StrideW: 1, PadH: 1}},
}

func avgPoolFloat32MatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 17))
	for _, c := range poolPlanes {
		x := engine.New(engine.Float64, 2, 3, c.h, c.w)
		for i := range x.Float64() {
			x.Float64()[i] = rng.Float64()*4 - 2
		}
		os, err := engine.Pool2DOutputShape(x.Shape(), c.p)
		opsMust(t, err)
		dout := gradcheck.Rand(rng, -1, 1, os...).As(engine.Float32)
		x32 := x.As(engine.Float32)
		want, wantDx, err := engine.Pool2DReference(x32.As(engine.Float64), dout.As(engine.Float64), c.p, false)
		opsMust(t, err)
		out, dx := engine.New(engine.Float32, os...), engine.New(engine.Float32, x.Shape()...)
		opsMust(t, engine.AvgPool2DForward(out, x32, c.p))
		opsMust(t, engine.AvgPool2DBackward(dx, dout, c.p))
		if msg := gradcheck.Close(out.Values(), want, 1e-6, 1e-6); msg != "" {
			t.Errorf("%dx%d %v out: %s", c.h, c.w, c.p, msg)
		}
		if msg := gradcheck.Close(dx.Values(), wantDx, 1e-6, 1e-6); msg != "" {
			t.Errorf("%dx%d %v dx: %s", c.h, c.w, c.p, msg)
		}
	}
	negZero := engine.New(engine.Float32, 1, 1, 5, 20)
	for i := range negZero.Float32() {
		negZero.Float32()[i] = float32(math.Copysign(0, -1))
	}
	p := engine.Pool2DSquare(3, 1, 1)
	os, _ := engine.Pool2DOutputShape(negZero.Shape(), p)
	out, dx := engine.New(engine.Float32, os...), engine.New(engine.Float32, negZero.Shape()...)
	opsMust(t, engine.AvgPool2DForward(out, negZero, p))
	opsMust(t, engine.AvgPool2DBackward(dx, negZero, p))
	for i, v := range append(out.Float32(), dx.Float32()...) {
		if math.Float32bits(v) != 0 {
			t.Fatalf("element %d of a pool of −0s is %v (bits %#x), want +0", i, v, math.Float32bits(v))
		}
	}
}

// A global average over a large plane keeps float32's precision: a
// 4096×4096 plane of 0.3 averaged 0.2975 (−0.8%) in one float32 chain.
func TestGlobalAvgPoolOfALargePlane(t *testing.T) {
	const side = 4096
	x := engine.New(engine.Float32, 1, 1, side, side)
	if err := x.Fill(0.3); err != nil {
		t.Fatal(err)
	}
	out := engine.New(engine.Float32, 1, 1, 1, 1)
	if err := engine.GlobalAvgPoolForward(out, x); err != nil {
		t.Fatal(err)
	}
	got, err := out.Get(0)
	if err != nil {
		t.Fatal(err)
	}
	if rel := math.Abs(got/float64(float32(0.3)) - 1); rel > 1e-6 {
		t.Fatalf("mean %v of a plane of 0.3: relative error %.2g", got, rel)
	}
}
