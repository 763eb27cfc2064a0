package engine_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// convRun is one convolution's tensors on the CPU and their GPU copies.
type convRun struct {
	c                    convCase
	x, w, b, dout        *engine.Tensor // CPU float32
	dx, dw, db, out      *engine.Tensor // CPU results
	gx, gw, gb, gdout    *engine.Tensor // GPU inputs
	gdx, gdw, gdb, gout  *engine.Tensor // GPU results
	kFwd, kDgrad, kWgrad int            // reduction lengths
}

func newConvRun(t *testing.T, rng *rand.Rand, c convCase) *convRun {
	t.Helper()
	r := &convRun{c: c}
	xs, ws := c.shapes()
	os, err := engine.Conv2DOutputShape(xs, ws, c.p)
	opsMust(t, err)
	r.x, r.gx = devRand(t, rng, xs...)
	r.w, r.gw = devRand(t, rng, ws...)
	if c.bias {
		r.b, r.gb = devRand(t, rng, c.cout)
	}
	r.dout, r.gdout = devRand(t, rng, os...)
	r.out, r.gout = engine.New(engine.Float32, os...), dev(t, engine.New(engine.Float32, os...))
	r.out.Fill(math.NaN()) // must be overwritten
	r.gout.Fill(math.NaN())
	r.dx, r.gdx = engine.New(engine.Float32, xs...), dev(t, engine.New(engine.Float32, xs...))
	r.dx.Fill(math.NaN())
	r.gdx.Fill(math.NaN())
	// Parameter gradients start non-zero: backward must add to them.
	r.dw, r.gdw = devRand(t, rng, ws...)
	r.db, r.gdb = devRand(t, rng, c.cout)
	g := max(c.p.Groups, 1)
	r.kFwd = c.cin / g * c.kh * c.kw
	r.kDgrad = c.cout / g * c.kh * c.kw
	r.kWgrad = os[0] * os[2] * os[3]
	return r
}

// convKernel names a pass's kernel on a tile ("64x64"); dt is f32, tf32 or
// bf16.
func convKernel(pass, tile, dt string) string {
	return fmt.Sprintf("conv2d_%s_%s_%s", pass, tile, dt)
}

// check compares the GPU results, computed by the kernels of lp (nil:
// fp32), with the CPU's fp32 ones: at lp's tolerance, or twice fp32's (after
// two backward passes the sums doubled).
func (r *convRun) check(t *testing.T, name, tile string, splits bool, lp *lowPrecision, fwd, bwd bool) {
	t.Helper()
	dt := "f32"
	tol := func(k int) (float64, float64) {
		a, rt := gemmTol(k)
		return 2 * a, rt
	}
	if lp != nil {
		dt, tol = lp.dt, lp.tol
	}
	if fwd {
		a, rt := tol(r.kFwd + 1)
		checkKernels(t, []string{convKernel("forward", tile, dt)}, name+" out", r.gout, r.out, a, rt)
	}
	if !bwd {
		return
	}
	if r.gdx != nil {
		a, rt := tol(r.kDgrad)
		checkKernels(t, []string{convKernel("input_grad", tile, dt)}, name+" dx", r.gdx, r.dx, a, rt)
	}
	if r.gdw != nil {
		ks := []string{convKernel("weight_grad", tile, dt)}
		if splits {
			ks = append(ks, "gemm_splitk_reduce_f32")
		}
		a, rt := tol(2 * r.kWgrad)
		checkKernels(t, ks, name+" dw", r.gdw, r.dw, a, rt)
	}
	if r.gdb != nil {
		// An fp32 weight gradient takes the bias gradient as its last column.
		ks := []string{"conv2d_bias_grad_f32"}
		if r.gdw != nil && lp == nil {
			ks = []string{convKernel("weight_grad", tile, dt)}
			if splits {
				ks = append(ks, "gemm_splitk_reduce_f32")
			}
		}
		a, rt := gemmTol(2 * r.kWgrad)
		checkKernels(t, ks, name+" db", r.gdb, r.db, a, rt)
	}
}

func (r *convRun) forward(t *testing.T) {
	t.Helper()
	opsMust(t, engine.Conv2DForward(r.out, r.x, r.w, r.b, r.c.p))
	opsMust(t, engine.Conv2DForward(r.gout, r.gx, r.gw, r.gb, r.c.p))
}

func (r *convRun) backward(t *testing.T) {
	t.Helper()
	opsMust(t, engine.Conv2DBackward(r.dx, r.dw, r.db, r.dout, r.x, r.w, r.c.p))
	opsMust(t, engine.Conv2DBackward(r.gdx, r.gdw, r.gdb, r.gdout, r.gx, r.gw, r.c.p))
}

// Every case of the CPU tests (odd sizes, batch 1, stride, padding,
// dilation, groups, depthwise, 1×1, a kernel that fills the input), forward
// and two backward passes (dw and db start random and must be added to), on
// the 64 tile with the automatic plan, on the 128 tile with the weight
// gradient split three ways, and on the 32×128 tile (the passes over few
// channels) both ways.
func TestCUDAConv2D(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDATF32(false)
	for _, plan := range []struct{ tm, tn, splits int }{{64, 64, 0}, {128, 128, 3}, {32, 128, 0}, {32, 128, 3}} {
		restore := engine.SetGemmTileForTest(plan.tm, plan.tn, plan.splits)
		tile := fmt.Sprintf("%dx%d", plan.tm, plan.tn)
		for i, c := range convCases {
			rng := rand.New(rand.NewPCG(21, uint64(i)))
			r := newConvRun(t, rng, c)
			r.forward(t)
			r.backward(t)
			r.backward(t)
			steps := (r.kWgrad + 7) / 8
			split := plan.splits > 1 && steps > 1
			r.check(t, fmt.Sprintf("%s tile %s splits %d", c.name, tile, plan.splits), tile, split, nil, true, true)
		}
		restore()
	}
}

// The weight gradient on the 32 tile (the convolutions with few channels
// take it), with its bias column, on every case, with the automatic split
// and split three ways; two passes, so that it adds. In bf16 too (the bias
// gradient in its own kernel), on every other case.
func TestCUDAConv2DWeightGradSmallTile(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDATF32(false)
	for _, lp := range []*lowPrecision{nil, &bf16Setting} {
		for _, splits := range []int{0, 3} {
			restore := engine.SetGemmPlanForTest(32, splits)
			for i, c := range convCases {
				if lp != nil && i%2 == 1 {
					continue
				}
				rng := rand.New(rand.NewPCG(24, uint64(i)))
				r := newConvRun(t, rng, c)
				if lp != nil {
					r.gw.SetPrecision(engine.BF16)
				}
				r.dx, r.gdx = nil, nil // the input gradient has no 32 tile
				r.backward(t)
				r.backward(t)
				split := splits > 1 && (r.kWgrad+7)/8 > 1
				r.check(t, fmt.Sprintf("%s tile 32 splits %d", c.name, splits), "32x32", split, lp, false, true)
			}
			restore()
		}
	}
}

// Which tile each pass's plan picks: the small and rectangular ones for
// few channels and taps, in fp32 and bf16.
func TestCUDAConv2DTilePlan(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDATF32(false)
	for _, c := range []struct {
		name, pass     string
		m, n, k        int
		prec           engine.Precision
		wantTM, wantTN int
	}{
		{"lenet conv1 forward (6 channels, batch 64)", "forward", 6, 64 * 28 * 28, 25, engine.FP32, 32, 128},
		{"lenet conv2 input gradient (6 channels)", "input_grad", 6, 64 * 14 * 14, 400, engine.FP32, 32, 128},
		{"lenet conv1 weight gradient (6 × 25 taps + bias)", "weight_grad", 6, 26, 64 * 28 * 28, engine.FP32, 32, 32},
		{"lenet conv2 weight gradient (16 × 150 + bias)", "weight_grad", 16, 151, 64 * 10 * 10, engine.FP32, 32, 128},
		{"cnn conv4 weight gradient (64 × 576 + bias)", "weight_grad", 64, 577, 64 * 14 * 14, engine.FP32, 64, 64},
		{"cnn conv4 forward (64 channels)", "forward", 64, 64 * 14 * 14, 576, engine.FP32, 64, 64},
		{"lenet conv1 forward in bf16", "forward", 6, 64 * 28 * 28, 25, engine.BF16, 32, 128},
		{"lenet conv1 weight gradient in bf16", "weight_grad", 6, 26, 64 * 28 * 28, engine.BF16, 32, 32},
		{"cnn conv4 forward in bf16", "forward", 64, 64 * 14 * 14, 576, engine.BF16, 64, 64},
	} {
		tm, tn, _, err := engine.ConvPlanForTest(c.pass, c.m, c.n, c.k, c.prec)
		opsMust(t, err)
		if tm != c.wantTM || tn != c.wantTN {
			t.Errorf("%s: tile %d×%d, want %d×%d", c.name, tm, tn, c.wantTM, c.wantTN)
		}
	}
}

// Nil gradients: each of dx, dw, db asked for alone.
func TestCUDAConv2DPartialGradients(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDATF32(false)
	c := convCases[4] // groups2, with bias
	for _, which := range []string{"dx", "dw", "db"} {
		rng := rand.New(rand.NewPCG(22, 0))
		r := newConvRun(t, rng, c)
		dx, dw, db, gdx, gdw, gdb := r.dx, r.dw, r.db, r.gdx, r.gdw, r.gdb
		switch which {
		case "dx":
			dw, db, gdw, gdb = nil, nil, nil, nil
		case "dw":
			dx, db, gdx, gdb = nil, nil, nil, nil
		case "db":
			dx, dw, gdx, gdw = nil, nil, nil, nil
		}
		opsMust(t, engine.Conv2DBackward(dx, dw, db, r.dout, r.x, r.w, c.p))
		opsMust(t, engine.Conv2DBackward(gdx, gdw, gdb, r.gdout, r.gx, r.gw, c.p))
		r.gdx, r.gdw, r.gdb = gdx, gdw, gdb
		r.check(t, c.name+" only "+which, "64x64", false, nil, false, true)
	}
}

// TF32 convolutions: against the float64 CPU op on TF32-rounded inputs to
// fp32 summation error (products of TF32 values are exact, so this checks
// the tiling and the rounding on the way into shared memory), and against
// the fp32 CPU op to TF32 precision (see TestCUDAGemmTF32). The bias and its
// gradient stay fp32.
func TestCUDAConv2DTF32(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDATF32(true)
	defer engine.SetCUDATF32(false)
	checkConvLowPrecision(t, tf32Setting, func(*engine.Tensor) {})
}

// bf16 convolutions (the weight's --precision bf16): the same checks with
// inputs rounded to bf16.
func TestCUDAConv2DBF16(t *testing.T) {
	cudaOrSkip(t)
	checkConvLowPrecision(t, bf16Setting, func(w *engine.Tensor) { w.SetPrecision(engine.BF16) })
}

// The bias gradient in its own launch (bf16 weights; fp32 without a weight
// gradient) over a batch long enough to split into runs of images (100
// images of 132 pixels: 4 runs): the partials add up to the CPU's sum.
func TestCUDAConv2DBiasGradSplitsOverTheBatch(t *testing.T) {
	cudaOrSkip(t)
	c := convCase{"bias-split", 100, 2, 12, 11, 3, 3, 3, engine.Conv2DSquare(1, 1, 1, 1), true}
	for _, bf16 := range []bool{true, false} {
		r := newConvRun(t, rand.New(rand.NewPCG(29, 31)), c)
		dw, gdw := r.dw, r.gdw
		if bf16 {
			r.gw.SetPrecision(engine.BF16)
		} else {
			dw, gdw = nil, nil
		}
		opsMust(t, engine.Conv2DBackward(r.dx, dw, r.db, r.dout, r.x, r.w, c.p))
		opsMust(t, engine.Conv2DBackward(r.gdx, gdw, r.gdb, r.gdout, r.gx, r.gw, c.p))
		atol, rtol := gemmTol(2 * r.kWgrad)
		checkKernels(t, []string{"conv2d_bias_grad_f32", "gemm_splitk_reduce_f32"},
			fmt.Sprintf("%s db (bf16 weights %v)", c.name, bf16), r.gdb, r.db, atol, rtol)
	}
}

// checkConvLowPrecision runs cases with stride 2 and padding, groups,
// dilation and a strided 1×1 on both tiles, with prepare applied to the GPU
// weight, against the float64 CPU op on rounded inputs and the fp32 CPU op.
func checkConvLowPrecision(t *testing.T, lp lowPrecision, prepare func(w *engine.Tensor)) {
	type lpCase struct{ tm, tn, i int }
	cases := []lpCase{
		{64, 64, 1}, {64, 64, 4}, {128, 128, 3}, {128, 128, 9}, // stride2-pad1, groups2, dilation2, 1x1-stride2
	}
	if lp.dt == "bf16" { // bf16 has the small tiles too: 32×128, and 32×32 for the weight gradient
		cases = append(cases, lpCase{32, 128, 1}, lpCase{32, 128, 4}, lpCase{32, 32, 4})
	}
	for _, tc := range cases {
		tile := fmt.Sprintf("%dx%d", tc.tm, tc.tn)
		restore := engine.SetGemmTileForTest(tc.tm, tc.tn, 0)
		c := convCases[tc.i]
		rng := rand.New(rand.NewPCG(23, uint64(tc.i)))
		r := newConvRun(t, rng, c)
		prepare(r.gw)
		dw0 := r.dw.As(engine.Float64)
		r.forward(t)
		r.backward(t)
		restore()
		name := fmt.Sprintf("%s %s tile %s", c.name, lp.dt, tile)
		passTile := func(pass string) string { // a forced tile the pass lacks falls back to 64×64
			if tile == "32x32" && pass != "weight_grad" {
				return "64x64"
			}
			return tile
		}
		if tile != "32x32" {
			r.check(t, name, tile, false, &lp, true, true)
		}

		xr, wr, doutr := roundedCopy(r.x, lp.round), roundedCopy(r.w, lp.round), roundedCopy(r.dout, lp.round)
		var b64 *engine.Tensor
		if r.b != nil {
			b64 = r.b.As(engine.Float64)
		}
		out := engine.New(engine.Float64, r.out.Shape()...)
		dx := engine.New(engine.Float64, r.x.Shape()...)
		opsMust(t, engine.Conv2DForward(out, xr, wr, b64, c.p))
		opsMust(t, engine.Conv2DBackward(dx, dw0, nil, doutr, xr, wr, c.p))
		for _, z := range []struct {
			pass      string
			k         int
			got, want *engine.Tensor
		}{{"forward", r.kFwd + 1, r.gout, out}, {"input_grad", r.kDgrad, r.gdx, dx}, {"weight_grad", r.kWgrad + 1, r.gdw, dw0}} {
			atol, rtol := gemmTol(z.k)
			checkKernels(t, []string{convKernel(z.pass, passTile(z.pass), lp.dt)}, name+" "+z.pass+" vs rounded float64",
				z.got, z.want.As(engine.Float32), atol, rtol)
		}
	}
}

// The debug switch KILN_CUDA_CHECK reruns Conv2D on the CPU and compares;
// it must pass a correct kernel (and so its CPU rerun must be wired right).
func TestCUDAConv2DCheckSwitch(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDACheck(true)
	defer engine.SetCUDACheck(false)
	c := convCases[1]
	r := newConvRun(t, rand.New(rand.NewPCG(24, 0)), c)
	opsMust(t, engine.Conv2DForward(r.gout, r.gx, r.gw, r.gb, c.p))
	opsMust(t, engine.Conv2DBackward(r.gdx, r.gdw, r.gdb, r.gdout, r.gx, r.gw, c.p))
	opsMust(t, engine.Conv2DBackward(nil, nil, r.gdb, r.gdout, r.gx, r.gw, c.p))
}
