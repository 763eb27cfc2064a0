package engine_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// Convolution's oracle is Conv2DReference (conv_ref.go), whose adjoint is
// itself gradient-checked below. Against it: the Go lowerings (col and
// pointwise, float64 and float32) here, the C path in conv_cpu_test.go (run
// these with CGO_ENABLED=0 too, for the portable path) and the CUDA kernels
// in conv_cuda_test.go, on the awkward cases of convCases.
type convCase struct {
	name                       string
	n, cin, h, w, cout, kh, kw int
	p                          engine.Conv2DParams
	bias                       bool
}

// Small, awkward cases: odd and non-square sizes, batch 1, channel counts
// that are not multiples of 8, every hyper-parameter away from its default.
var convCases = []convCase{
	{"plain", 2, 3, 5, 5, 4, 3, 3, engine.Conv2DParams{}, true},
	{"stride2-pad1", 3, 3, 7, 5, 4, 3, 3, engine.Conv2DSquare(2, 1, 1, 1), true},
	{"mixed-stride-pad", 1, 5, 7, 5, 3, 3, 2, engine.Conv2DParams{StrideH: 2, StrideW: 1, PadH: 2}, false},
	{"dilation2", 2, 3, 7, 6, 2, 3, 3, engine.Conv2DParams{DilationH: 2, DilationW: 2, PadH: 1, PadW: 2}, true},
	{"groups2", 3, 4, 5, 5, 6, 3, 3, engine.Conv2DSquare(1, 1, 1, 2), true},
	{"depthwise", 1, 3, 6, 5, 6, 3, 3, engine.Conv2DSquare(2, 1, 1, 3), false},
	{"depthwise-stride1", 2, 5, 5, 4, 5, 3, 3, engine.Conv2DSquare(1, 1, 1, 5), true},
	{"pointwise", 3, 5, 4, 3, 3, 1, 1, engine.Conv2DParams{}, true},
	{"pointwise-groups", 1, 4, 3, 5, 6, 1, 1, engine.Conv2DParams{Groups: 2}, false},
	{"1x1-stride2", 2, 3, 5, 5, 2, 1, 1, engine.Conv2DSquare(2, 0, 1, 1), true},
	{"lenet-like", 2, 1, 8, 7, 3, 5, 5, engine.Conv2DSquare(1, 2, 1, 1), true},
	{"resnet-stem", 2, 3, 13, 11, 4, 7, 7, engine.Conv2DSquare(2, 3, 1, 1), false}, // 7×7 stride 2 pad 3
	{"kernel-fills-input", 2, 2, 3, 3, 3, 3, 3, engine.Conv2DParams{}, true},
	{"wide-stride", 2, 3, 9, 8, 2, 2, 3, engine.Conv2DParams{StrideH: 3, StrideW: 4, PadW: 1}, true},
	{"pad-one-axis", 2, 3, 6, 7, 4, 2, 3, engine.Conv2DParams{PadW: 1, DilationH: 2}, true},
	{"narrow-column", 2, 2, 6, 1, 3, 3, 3, engine.Conv2DSquare(1, 1, 1, 1), true}, // too much junk for wide
	// Stride phases that no tap reaches (dilation 2 with stride 2: odd rows
	// and columns get no gradient) and a phase with no pixels (H 1, stride 2).
	{"stride2-dilation2", 2, 3, 9, 8, 3, 3, 3, engine.Conv2DParams{StrideH: 2, StrideW: 2, DilationH: 2, DilationW: 2, PadH: 2, PadW: 1}, true},
	{"stride-over-input", 2, 2, 1, 5, 3, 1, 3, engine.Conv2DParams{StrideH: 2, StrideW: 3, PadW: 1}, true},
}

func (c convCase) shapes() (x, w []int) {
	g := max(c.p.Groups, 1)
	return []int{c.n, c.cin, c.h, c.w}, []int{c.cout, c.cin / g, c.kh, c.kw}
}

// float32Inputs draws c's input, weights and (if c.bias) bias in float32,
// and gives the output's shape.
func (c convCase) float32Inputs(t *testing.T, rng *rand.Rand) (x, w, b *engine.Tensor, out []int) {
	t.Helper()
	xs, ws := c.shapes()
	x, w = randTensor(rng, engine.Float32, xs...), randTensor(rng, engine.Float32, ws...)
	if c.bias {
		b = randTensor(rng, engine.Float32, c.cout)
	}
	out, err := engine.Conv2DOutputShape(xs, ws, c.p)
	if err != nil {
		t.Fatal(err)
	}
	return x, w, b, out
}

func randTensor(rng *rand.Rand, dt engine.DType, shape ...int) *engine.Tensor {
	t := gradcheck.Rand(rng, -1, 1, shape...)
	if dt == engine.Float32 {
		return t.As(engine.Float32)
	}
	return t
}

func TestGradientConv2D(t *testing.T) {
	for i, c := range convCases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(3, uint64(i)))
			xs, ws := c.shapes()
			x := gradcheck.Rand(rng, -1, 1, xs...)
			w := gradcheck.Rand(rng, -1, 1, ws...)
			var b, db *engine.Tensor
			inputs := []*engine.Tensor{x, w}
			if c.bias {
				b = gradcheck.Rand(rng, -1, 1, c.cout)
				db = engine.New(engine.Float64, c.cout)
				inputs = append(inputs, b)
			}
			os, err := engine.Conv2DOutputShape(xs, ws, c.p)
			if err != nil {
				t.Fatal(err)
			}
			out := engine.New(engine.Float64, os...)
			dx := engine.New(engine.Float64, xs...)
			dw := engine.New(engine.Float64, ws...)
			gradcheck.Check(t, inputs,
				func() (*engine.Tensor, error) { return out, engine.Conv2DForward(out, x, w, b, c.p) },
				func(dy *engine.Tensor) ([]*engine.Tensor, error) {
					dw.Zero()
					grads := []*engine.Tensor{dx, dw}
					if db != nil {
						db.Zero()
						grads = append(grads, db)
					}
					return grads, engine.Conv2DBackward(dx, dw, db, dy, x, w, c.p)
				}, gradcheck.Options{Names: []string{"x", "w", "b"}})
		})
	}
}

// Forward and backward against the reference (Conv2DReference) in both dtypes, with larger
// shapes than the gradient check can afford (LeNet's second layer included).
func TestConv2DMatchesReference(t *testing.T) {
	cases := append([]convCase{
		{"lenet-conv1", 3, 1, 28, 28, 6, 5, 5, engine.Conv2DSquare(1, 2, 1, 1), true},
		{"lenet-conv2", 5, 6, 14, 14, 16, 5, 5, engine.Conv2DParams{}, true},
		{"inception-1x1", 3, 12, 7, 9, 10, 1, 1, engine.Conv2DParams{}, true},
		// Small planes through the col lowering with K ≥ 128, more images
		// than threads: several images a product (conv.go's convBatch), the
		// last product of a part short.
		{"batched-stride2", 9, 16, 9, 7, 6, 3, 3, engine.Conv2DSquare(2, 1, 1, 1), true},
		{"batched-1x1-stride2", 7, 128, 6, 6, 5, 1, 1, engine.Conv2DSquare(2, 0, 1, 1), true},
		{"batched-stem", 5, 3, 12, 12, 4, 7, 7, engine.Conv2DSquare(2, 3, 1, 1), false},
		{"batched-products", 24, 15, 22, 22, 3, 3, 3, engine.Conv2DSquare(2, 1, 1, 1), true},
		// Backward batches from K = 512.
		{"batched-backward", 9, 64, 7, 7, 6, 3, 3, engine.Conv2DSquare(2, 1, 1, 1), true},
		{"batched-backward-products", 24, 57, 22, 22, 3, 3, 3, engine.Conv2DSquare(2, 1, 1, 1), true},
	}, convCases...)
	for i, c := range cases {
		for _, dt := range []engine.DType{engine.Float64, engine.Float32} {
			rng := rand.New(rand.NewPCG(4, uint64(i)))
			xs, ws := c.shapes()
			x, w := randTensor(rng, dt, xs...), randTensor(rng, dt, ws...)
			var b *engine.Tensor
			if c.bias {
				b = randTensor(rng, dt, c.cout)
			}
			os, err := engine.Conv2DOutputShape(xs, ws, c.p)
			if err != nil {
				t.Fatal(err)
			}
			dout := randTensor(rng, dt, os...)
			wantOut, wantDx, wantDw, wantDb, err := engine.Conv2DReference(x, w, b, dout, c.p)
			if err != nil {
				t.Fatal(err)
			}

			out := engine.New(dt, os...)
			out.Fill(math.NaN()) // must be overwritten
			if err := engine.Conv2DForward(out, x, w, b, c.p); err != nil {
				t.Fatal(err)
			}
			dx := engine.New(dt, xs...)
			dx.Fill(math.NaN()) // must be overwritten
			dw, db := engine.New(dt, ws...), engine.New(dt, c.cout)
			dw.Fill(0.5) // must be accumulated into
			db.Fill(0.5)
			if err := engine.Conv2DBackward(dx, dw, db, dout, x, w, c.p); err != nil {
				t.Fatal(err)
			}
			tol, sumTol := 1e-12, 1e-12
			if dt == engine.Float32 {
				// dw and db sum over every image's output pixels: a float32 sum
				// of N terms carries about N·ε of its terms' size (the portable
				// GEMM on arm64 took the 24-image cases past 2e-5).
				tol = 2e-5
				sumTol = tol * max(1, float64(len(dout.Values())/c.cout)/1000)
			}
			for _, cmp := range []struct {
				name      string
				got, want []float64
				offset    float64
				tol       float64
			}{{"out", out.Values(), wantOut, 0, tol}, {"dx", dx.Values(), wantDx, 0, tol},
				{"dw", dw.Values(), wantDw, 0.5, sumTol}, {"db", db.Values(), wantDb, 0.5, sumTol}} {
				want := make([]float64, len(cmp.want))
				for j, v := range cmp.want {
					want[j] = v + cmp.offset
				}
				if msg := gradcheck.Close(cmp.got, want, cmp.tol, cmp.tol); msg != "" {
					t.Errorf("%s %v %s: %s", c.name, dt, cmp.name, msg)
				}
			}
		}
	}
}

// The float32 path (the C GEMM) agrees with the float64 reference.
func TestConv2DFloat32MatchesFloat64(t *testing.T) {
	c := convCase{"lenet-conv2", 4, 6, 14, 14, 16, 5, 5, engine.Conv2DParams{}, true}
	xs, ws := c.shapes()
	rng := rand.New(rand.NewPCG(5, 5))
	x64, w64, b64 := randTensor(rng, engine.Float64, xs...), randTensor(rng, engine.Float64, ws...),
		randTensor(rng, engine.Float64, c.cout)
	os, _ := engine.Conv2DOutputShape(xs, ws, c.p)
	dout64 := randTensor(rng, engine.Float64, os...)
	run := func(dt engine.DType) [][]float64 {
		x, w, b, dout := x64.As(dt), w64.As(dt), b64.As(dt), dout64.As(dt)
		out, dx, dw, db := engine.New(dt, os...), engine.New(dt, xs...), engine.New(dt, ws...), engine.New(dt, c.cout)
		if err := engine.Conv2DForward(out, x, w, b, c.p); err != nil {
			t.Fatal(err)
		}
		if err := engine.Conv2DBackward(dx, dw, db, dout, x, w, c.p); err != nil {
			t.Fatal(err)
		}
		return [][]float64{out.Values(), dx.Values(), dw.Values(), db.Values()}
	}
	got, want := run(engine.Float32), run(engine.Float64)
	for i, name := range []string{"out", "dx", "dw", "db"} {
		if msg := gradcheck.Close(got[i], want[i], 1e-4, 1e-4); msg != "" {
			t.Errorf("%s: %s", name, msg)
		}
	}
}

// lenetConv holds LeNet-5's second convolution at batch 64 in float32.
type lenetConv struct {
	x, w, b, out, dout, dx, dw, db *engine.Tensor
	p                              engine.Conv2DParams
}

func newLenetConv(n int) *lenetConv {
	rng := rand.New(rand.NewPCG(6, 6))
	l := &lenetConv{
		x: randTensor(rng, engine.Float32, n, 6, 14, 14), w: randTensor(rng, engine.Float32, 16, 6, 5, 5),
		b: randTensor(rng, engine.Float32, 16), out: engine.New(engine.Float32, n, 16, 10, 10),
		dout: randTensor(rng, engine.Float32, n, 16, 10, 10), dx: engine.New(engine.Float32, n, 6, 14, 14),
		dw: engine.New(engine.Float32, 16, 6, 5, 5), db: engine.New(engine.Float32, 16),
	}
	return l
}

func (l *lenetConv) step() error {
	if err := engine.Conv2DForward(l.out, l.x, l.w, l.b, l.p); err != nil {
		return err
	}
	return engine.Conv2DBackward(l.dx, l.dw, l.db, l.dout, l.x, l.w, l.p)
}

func TestConv2DDeterministic(t *testing.T) {
	var runs [2][]*engine.Tensor
	for r := range runs {
		l := newLenetConv(64)
		if err := l.step(); err != nil {
			t.Fatal(err)
		}
		runs[r] = []*engine.Tensor{l.out, l.dx, l.dw, l.db}
	}
	for i, name := range []string{"out", "dx", "dw", "db"} {
		a, b := runs[0][i].Float32(), runs[1][i].Float32()
		for j := range a {
			if math.Float32bits(a[j]) != math.Float32bits(b[j]) {
				t.Fatalf("%s[%d] differs between runs: %v vs %v", name, j, a[j], b[j])
			}
		}
	}
}

func TestConv2DNoAllocs(t *testing.T) {
	l := newLenetConv(8)
	if err := l.step(); err != nil {
		t.Fatal(err)
	}
	if a := testing.AllocsPerRun(20, func() { _ = l.step() }); a != 0 {
		t.Fatalf("forward+backward allocates %v times per step", a)
	}
	// A 1×1 layer with groups and an input-layer backward (no dx).
	rng := rand.New(rand.NewPCG(7, 7))
	x, w := randTensor(rng, engine.Float32, 4, 6, 5, 7), randTensor(rng, engine.Float32, 4, 3, 1, 1)
	out, dw := engine.New(engine.Float32, 4, 4, 5, 7), engine.New(engine.Float32, 4, 3, 1, 1)
	p := engine.Conv2DParams{Groups: 2}
	step := func() {
		_ = engine.Conv2DForward(out, x, w, nil, p)
		_ = engine.Conv2DBackward(nil, dw, nil, out, x, w, p)
	}
	step()
	if a := testing.AllocsPerRun(20, step); a != 0 {
		t.Fatalf("pointwise forward+backward allocates %v times per step", a)
	}
}

// Parameter gradients accumulate, the input gradient is overwritten.
func TestConv2DBackwardAccumulates(t *testing.T) {
	c := convCases[1]
	xs, ws := c.shapes()
	rng := rand.New(rand.NewPCG(8, 8))
	x, w := randTensor(rng, engine.Float64, xs...), randTensor(rng, engine.Float64, ws...)
	os, _ := engine.Conv2DOutputShape(xs, ws, c.p)
	dout := randTensor(rng, engine.Float64, os...)
	dx, dw, db := engine.New(engine.Float64, xs...), engine.New(engine.Float64, ws...), engine.New(engine.Float64, c.cout)
	dw1, db1 := engine.New(engine.Float64, ws...), engine.New(engine.Float64, c.cout)
	if err := engine.Conv2DBackward(dx, dw1, db1, dout, x, w, c.p); err != nil {
		t.Fatal(err)
	}
	dx1 := dx.Clone()
	for i := 0; i < 2; i++ {
		if err := engine.Conv2DBackward(dx, dw, db, dout, x, w, c.p); err != nil {
			t.Fatal(err)
		}
	}
	twice := func(v []float64) []float64 {
		for i := range v {
			v[i] *= 2
		}
		return v
	}
	if msg := gradcheck.Close(dw.Values(), twice(dw1.Values()), 1e-12, 1e-12); msg != "" {
		t.Errorf("dw after two passes: %s", msg)
	}
	if msg := gradcheck.Close(db.Values(), twice(db1.Values()), 1e-12, 1e-12); msg != "" {
		t.Errorf("db after two passes: %s", msg)
	}
	if msg := gradcheck.Close(dx.Values(), dx1.Values(), 0, 0); msg != "" {
		t.Errorf("dx must be overwritten: %s", msg)
	}
}

// Asking for only some gradients gives the same values as asking for all.
func TestConv2DPartialGradients(t *testing.T) {
	for i, c := range convCases {
		xs, ws := c.shapes()
		rng := rand.New(rand.NewPCG(9, uint64(i)))
		x, w := randTensor(rng, engine.Float64, xs...), randTensor(rng, engine.Float64, ws...)
		os, _ := engine.Conv2DOutputShape(xs, ws, c.p)
		dout := randTensor(rng, engine.Float64, os...)
		dx, dw, db := engine.New(engine.Float64, xs...), engine.New(engine.Float64, ws...), engine.New(engine.Float64, c.cout)
		if err := engine.Conv2DBackward(dx, dw, db, dout, x, w, c.p); err != nil {
			t.Fatal(err)
		}
		dx1, dw1, db1 := engine.New(engine.Float64, xs...), engine.New(engine.Float64, ws...), engine.New(engine.Float64, c.cout)
		for _, err := range []error{
			engine.Conv2DBackward(dx1, nil, nil, dout, x, w, c.p),
			engine.Conv2DBackward(nil, dw1, nil, dout, x, w, c.p),
			engine.Conv2DBackward(nil, nil, db1, dout, x, w, c.p),
			engine.Conv2DBackward(nil, nil, nil, dout, x, w, c.p),
		} {
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, cmp := range [][2]*engine.Tensor{{dx1, dx}, {dw1, dw}, {db1, db}} {
			if msg := gradcheck.Close(cmp[0].Values(), cmp[1].Values(), 1e-12, 1e-12); msg != "" {
				t.Errorf("%s: %s", c.name, msg)
			}
		}
	}
}

func wantShapeError(t *testing.T, op string, err error) {
	t.Helper()
	var se *engine.ShapeError
	if !errors.As(err, &se) || se.Op != op {
		t.Errorf("got %v, want a ShapeError from %s", err, op)
		return
	}
	t.Log(err)
}

func TestConv2DShapeErrors(t *testing.T) {
	f32 := func(s ...int) *engine.Tensor { return engine.New(engine.Float32, s...) }
	x, w, b, out := f32(2, 4, 8, 8), f32(6, 4, 3, 3), f32(6), f32(2, 6, 6, 6)
	const fwd, bwd = "Conv2DForward", "Conv2DBackward"
	for _, c := range []struct {
		name         string
		out, x, w, b *engine.Tensor
		p            engine.Conv2DParams
	}{
		{"cin mismatch", out, x, f32(6, 3, 3, 3), b, engine.Conv2DParams{}},
		{"groups do not divide cin", out, x, f32(6, 1, 3, 3), b, engine.Conv2DParams{Groups: 3}},
		{"w not per group", out, x, w, b, engine.Conv2DParams{Groups: 2}},
		{"out wrong", f32(2, 6, 8, 8), x, w, b, engine.Conv2DParams{}},
		{"bias wrong", out, x, w, f32(5), engine.Conv2DParams{}},
		{"x rank 3", out, f32(4, 8, 8), w, b, engine.Conv2DParams{}},
		{"kernel too big", f32(2, 6, 1, 1), f32(2, 4, 2, 2), w, b, engine.Conv2DParams{}},
		{"negative pad", out, x, w, b, engine.Conv2DParams{PadH: -1}},
		{"negative stride", out, x, w, b, engine.Conv2DParams{StrideW: -2}},
		{"negative dilation", out, x, w, b, engine.Conv2DParams{DilationH: -1}},
		{"nil x", out, nil, w, b, engine.Conv2DParams{}},
		{"mixed dtypes", out, x, engine.New(engine.Float64, 6, 4, 3, 3), b, engine.Conv2DParams{}},
	} {
		wantShapeError(t, fwd, engine.Conv2DForward(c.out, c.x, c.w, c.b, c.p))
	}
	if err := engine.Conv2DForward(out, x, w, b, engine.Conv2DParams{}); err != nil {
		t.Fatalf("valid call refused: %v", err)
	}
	wantShapeError(t, bwd, engine.Conv2DBackward(f32(2, 4, 8, 7), nil, nil, out, x, w, engine.Conv2DParams{}))
	wantShapeError(t, bwd, engine.Conv2DBackward(nil, f32(6, 4, 3, 2), nil, out, x, w, engine.Conv2DParams{}))
	wantShapeError(t, bwd, engine.Conv2DBackward(nil, nil, f32(4), out, x, w, engine.Conv2DParams{}))
	wantShapeError(t, bwd, engine.Conv2DBackward(nil, nil, b, f32(2, 6, 5, 5), x, w, engine.Conv2DParams{}))
	wantShapeError(t, bwd, engine.Conv2DBackward(nil, nil, b, nil, x, w, engine.Conv2DParams{}))
	_, err := engine.Conv2DOutputShape([]int{1, 3, 4, 4}, []int{2, 3, 5, 5}, engine.Conv2DParams{})
	wantShapeError(t, "Conv2DOutputShape", err)
	_, err = engine.Conv2DOutputShape([]int{-1, 3, 4, 4}, []int{2, 3, 1, 1}, engine.Conv2DParams{})
	wantShapeError(t, "Conv2DOutputShape", err)
	s, err := engine.Conv2DOutputShape([]int{1, 3, 28, 28}, []int{6, 3, 5, 5}, engine.Conv2DSquare(1, 2, 1, 1))
	if err != nil || len(s) != 4 || s[2] != 28 || s[3] != 28 {
		t.Errorf("Conv2DOutputShape = %v, %v; want [1 6 28 28]", s, err)
	}
}

// Empty batches and empty planes (all padding) are valid and must not trip
// over zero-length buffers.
func TestConv2DEmpty(t *testing.T) {
	for _, dt := range []engine.DType{engine.Float32, engine.Float64} {
		p := engine.Conv2DSquare(1, 1, 1, 1)
		x, w, b := engine.New(dt, 0, 3, 5, 5), engine.New(dt, 4, 3, 3, 3), engine.New(dt, 4)
		out := engine.New(dt, 0, 4, 5, 5)
		if err := engine.Conv2DForward(out, x, w, b, p); err != nil {
			t.Fatal(err)
		}
		if err := engine.Conv2DBackward(x.Clone(), w.Clone(), b.Clone(), out, x, w, p); err != nil {
			t.Fatal(err)
		}
		// A 0×0 input padded by 1 gives a 2×2 output of bias alone.
		x, w = engine.New(dt, 1, 1, 0, 0), engine.New(dt, 4, 1, 1, 1)
		out = engine.New(dt, 1, 4, 2, 2)
		b.Fill(2)
		if err := engine.Conv2DForward(out, x, w, b, p); err != nil {
			t.Fatal(err)
		}
		for _, v := range out.Values() {
			if v != 2 {
				t.Fatalf("%v: out %v, want all 2", dt, out.Values())
			}
		}
		dw, db := engine.New(dt, 4, 1, 1, 1), engine.New(dt, 4)
		if err := engine.Conv2DBackward(engine.New(dt, 1, 1, 0, 0), dw, db, out, x, w, p); err != nil {
			t.Fatal(err)
		}
		if db.At(0) != 8 || dw.At(0) != 0 {
			t.Fatalf("%v: db %v dw %v, want 8s and 0s", dt, db.Values(), dw.Values())
		}
	}
}

// The reference's adjoint is the gradient of its forward, by central
// differences: the oracle is checked too.
func TestConv2DReferenceGradients(t *testing.T) {
	for i, c := range convCases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, uint64(i)))
			xs, ws := c.shapes()
			x, w := gradcheck.Rand(rng, -1, 1, xs...), gradcheck.Rand(rng, -1, 1, ws...)
			inputs := []*engine.Tensor{x, w}
			var b *engine.Tensor
			if c.bias {
				b = gradcheck.Rand(rng, -1, 1, c.cout)
				inputs = append(inputs, b)
			}
			os, err := engine.Conv2DOutputShape(xs, ws, c.p)
			if err != nil {
				t.Fatal(err)
			}
			tensor := func(v []float64, shape ...int) *engine.Tensor {
				out := engine.New(engine.Float64, shape...)
				for j, x := range v {
					out.SetAt(j, x)
				}
				return out
			}
			gradcheck.Check(t, inputs,
				func() (*engine.Tensor, error) {
					out, _, _, _, err := engine.Conv2DReference(x, w, b, nil, c.p)
					return tensor(out, os...), err
				},
				func(dy *engine.Tensor) ([]*engine.Tensor, error) {
					_, dx, dw, db, err := engine.Conv2DReference(x, w, b, dy, c.p)
					grads := []*engine.Tensor{tensor(dx, xs...), tensor(dw, ws...)}
					if b != nil {
						grads = append(grads, tensor(db, c.cout))
					}
					return grads, err
				}, gradcheck.Options{Names: []string{"x", "w", "b"}})
		})
	}
}
