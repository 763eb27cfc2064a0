package engine_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
)

// Linear forward and backward against the CPU op: batch 1, sizes around the
// tiles, one feature, and a batch long enough that the weight gradient
// splits over k and the bias gradient over its rows (300: 5 runs of 64);
// backward twice so dw and db must accumulate, then once overwriting them.
func TestCUDALinear(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDATF32(false)
	for i, c := range []struct {
		n, in, o int
		bias     bool
	}{
		{1, 1, 1, true}, {1, 17, 5, false}, {3, 33, 17, true}, {7, 5, 65, true}, {300, 3, 2, true}, {66, 9, 130, false},
	} {
		rng := rand.New(rand.NewPCG(31, uint64(i)))
		name := fmt.Sprintf("linear n=%d in=%d out=%d", c.n, c.in, c.o)
		x, gx := devRand(t, rng, c.n, c.in)
		w, gw := devRand(t, rng, c.o, c.in)
		var b, gb *engine.Tensor
		if c.bias {
			b, gb = devRand(t, rng, c.o)
		}
		out, gout := engine.New(engine.Float32, c.n, c.o), dev(t, engine.New(engine.Float32, c.n, c.o))
		out.Fill(math.NaN())
		gout.Fill(math.NaN())
		opsMust(t, engine.LinearForward(out, x, w, b))
		opsMust(t, engine.LinearForward(gout, gx, gw, gb))
		a, r := gemmTol(c.in + 1)
		fk := []string{"gemm_nt_64x64_f32"} // the bias in its epilogue
		checkKernels(t, fk, name+" out", gout, out, a, r)

		dout, gdout := devRand(t, rng, c.n, c.o)
		dx, gdx := engine.New(engine.Float32, c.n, c.in), dev(t, engine.New(engine.Float32, c.n, c.in))
		dx.Fill(math.NaN())
		gdx.Fill(math.NaN())
		dw, gdw := devRand(t, rng, c.o, c.in)
		db, gdb := devRand(t, rng, c.o)
		for range 2 {
			opsMust(t, engine.LinearBackward(dx, dw, db, dout, x, w))
			opsMust(t, engine.LinearBackward(gdx, gdw, gdb, gdout, gx, gw))
		}
		a, r = gemmTol(c.o)
		checkKernels(t, []string{"gemm_nn_64x64_f32"}, name+" dx", gdx, dx, a, r)
		wk := []string{"gemm_tn_64x64_f32"}
		if _, splits, _ := engine.GemmPlanForTest(c.o, c.in, c.n, 1); splits > 1 {
			wk = append(wk, "gemm_splitk_reduce_f32")
		}
		a, r = gemmTol(2 * c.n)
		checkKernels(t, wk, name+" dw", gdw, dw, a, r)
		checkKernels(t, []string{"linear_bias_grad_f32"}, name+" db", gdb, db, a, r)

		// SetGrads overwrites what dw and db hold (NaN here) on both.
		for _, g := range []*engine.Tensor{dw, gdw, db, gdb} {
			g.Fill(math.NaN())
		}
		opsMust(t, engine.LinearBackwardMode(engine.SetGrads, dx, dw, db, nil, dout, nil, x, w))
		opsMust(t, engine.LinearBackwardMode(engine.SetGrads, gdx, gdw, gdb, nil, gdout, nil, gx, gw))
		a, r = gemmTol(c.n)
		checkKernels(t, wk, name+" dw set", gdw, dw, a, r)
		checkKernels(t, []string{"linear_bias_grad_f32"}, name+" db set", gdb, db, a, r)

		if i%2 == 1 {
			continue
		}
		// Nil gradients: only db, then only dw.
		opsMust(t, engine.LinearBackward(nil, nil, db, dout, x, w))
		opsMust(t, engine.LinearBackward(nil, nil, gdb, gdout, gx, gw))
		opsMust(t, engine.LinearBackward(nil, dw, nil, dout, x, w))
		opsMust(t, engine.LinearBackward(nil, gdw, nil, gdout, gx, gw))
		a, r = gemmTol(3 * c.n)
		checkKernels(t, []string{"linear_bias_grad_f32"}, name+" db alone", gdb, db, a, r)
		checkKernels(t, wk, name+" dw alone", gdw, dw, a, r)
	}
}

// The debug switch reruns Linear on the CPU and compares.
func TestCUDALinearCheckSwitch(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDACheck(true)
	defer engine.SetCUDACheck(false)
	rng := rand.New(rand.NewPCG(32, 0))
	_, gx := devRand(t, rng, 5, 7)
	_, gw := devRand(t, rng, 3, 7)
	_, gb := devRand(t, rng, 3)
	_, gdout := devRand(t, rng, 5, 3)
	gout := dev(t, engine.New(engine.Float32, 5, 3))
	opsMust(t, engine.LinearForward(gout, gx, gw, gb))
	gdx := dev(t, engine.New(engine.Float32, 5, 7))
	gdw := dev(t, engine.New(engine.Float32, 3, 7))
	gdb := dev(t, engine.New(engine.Float32, 3))
	opsMust(t, engine.LinearBackward(gdx, gdw, gdb, gdout, gx, gw))
	opsMust(t, engine.LinearReLUForward(gout, gx, gw, gb))
	opsMust(t, engine.LinearReLUBackward(gdx, gdw, gdb, gdout, gdout, gout, gx, gw)) // dpre = dout, in place
}

// A weight set to TF32 (Tensor.SetPrecision, --precision tf32) runs its
// Linear and Conv2D products on the TF32 kernels with the global switch
// off: the same bits as KILN_TF32's, not fp32's. A bf16 weight runs the bf16
// kernels, whatever KILN_TF32 says.
func TestCUDAPrecisionPerWeight(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDATF32(false)
	rng := rand.New(rand.NewPCG(41, 1))
	_, gx := devRand(t, rng, 70, 150)
	_, gw := devRand(t, rng, 90, 150)
	_, cx := devRand(t, rng, 2, 8, 9, 9)
	_, cw := devRand(t, rng, 16, 8, 3, 3)
	run := func(p engine.Precision, global bool) (lin, conv []float32) {
		engine.SetCUDATF32(global)
		defer engine.SetCUDATF32(false)
		gw.SetPrecision(p)
		cw.SetPrecision(p)
		out := dev(t, engine.New(engine.Float32, 70, 90))
		opsMust(t, engine.LinearForward(out, gx, gw, nil))
		y := dev(t, engine.New(engine.Float32, 2, 16, 9, 9))
		opsMust(t, engine.Conv2DForward(y, cx, cw, nil, engine.Conv2DSquare(1, 1, 1, 1)))
		return out.As(engine.Float32).Float32(), y.As(engine.Float32).Float32()
	}
	l32, c32 := run(engine.FP32, false)
	lw, cwt := run(engine.TF32, false)
	lg, cg := run(engine.FP32, true)
	lb, cb := run(engine.BF16, false)
	if !slices.Equal(lw, lg) || !slices.Equal(cwt, cg) {
		t.Error("a TF32 weight's products differ from KILN_TF32's")
	}
	if slices.Equal(lw, l32) || slices.Equal(cwt, c32) {
		t.Error("a TF32 weight's products give the fp32 kernels' bits")
	}
	if slices.Equal(lb, l32) || slices.Equal(cb, c32) || slices.Equal(lb, lw) || slices.Equal(cb, cwt) {
		t.Error("a bf16 weight's products give the fp32 or TF32 kernels' bits")
	}
	if lb2, cb2 := run(engine.BF16, true); !slices.Equal(lb, lb2) || !slices.Equal(cb, cb2) {
		t.Error("KILN_TF32 changed a bf16 weight's products")
	}
}

// LinearReLUForward and LinearReLUBackward on the GPU: the forward is one
// product launch with the bias and the ReLU in its epilogue (or in the
// split-K reduce, when the product splits), the backward's mask rides in
// the bias gradient's launch; both give the bits of Linear and ReLU one
// after the other on the GPU, and agree with the CPU's fused ops.
func TestCUDALinearReLU(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDATF32(false)
	for i, c := range []struct {
		n, in, o int
		bias     bool
	}{{1, 1, 1, true}, {3, 33, 17, true}, {7, 5, 65, false}, {66, 9, 130, true}, {4, 4096, 8, true}} {
		rng := rand.New(rand.NewPCG(33, uint64(i)))
		name := fmt.Sprintf("linear+relu n=%d in=%d out=%d", c.n, c.in, c.o)
		x, gx := devRand(t, rng, c.n, c.in)
		w, gw := devRand(t, rng, c.o, c.in)
		var b, gb *engine.Tensor
		if c.bias {
			b, gb = devRand(t, rng, c.o)
		}
		dout, gdout := devRand(t, rng, c.n, c.o)
		newDev := func(shape ...int) *engine.Tensor { return dev(t, engine.New(engine.Float32, shape...)) }

		// Fused on the GPU, counted.
		fout, fdpre, fdx, fdw, fdb := newDev(c.n, c.o), newDev(c.n, c.o), newDev(c.n, c.in), newDev(c.o, c.in), newDev(c.o)
		opsMust(t, cuda.StartProfile())
		opsMust(t, engine.LinearReLUForward(fout, gx, gw, gb))
		fwd, err := cuda.StopProfile()
		opsMust(t, err)
		_, fsplits, _ := engine.GemmPlanForTest(c.n, c.o, c.in, 1)
		if want := 1 + b2i(fsplits > 1); fwd.Launches != want {
			t.Errorf("%s: the forward took %d launches, want %d", name, fwd.Launches, want)
		}
		opsMust(t, engine.LinearReLUBackward(fdx, fdw, fdb, fdpre, gdout, fout, gx, gw))

		// Apart on the GPU.
		aout, ay, adpre, adx, adw, adb := newDev(c.n, c.o), newDev(c.n, c.o), newDev(c.n, c.o), newDev(c.n, c.in), newDev(c.o, c.in), newDev(c.o)
		opsMust(t, engine.LinearForward(ay, gx, gw, gb))
		opsMust(t, engine.ActivationForward(aout, ay, engine.ReLU))
		opsMust(t, engine.ActivationBackward(adpre, gdout, ay, aout, engine.ReLU))
		opsMust(t, engine.LinearBackward(adx, adw, adb, adpre, gx, gw))
		names := []string{"out", "dpre", "dx", "dw", "db"}
		fused, apart := []*engine.Tensor{fout, fdpre, fdx, fdw, fdb}, []*engine.Tensor{aout, adpre, adx, adw, adb}
		for k := range names {
			f, err := engine.ToCPU(nil, fused[k])
			opsMust(t, err)
			a, err := engine.ToCPU(nil, apart[k])
			opsMust(t, err)
			if !bitsEqual(f, a) {
				t.Errorf("%s %s: fused and separate ops differ on the GPU", name, names[k])
			}
		}

		// Against the CPU's fused ops.
		out, dpre := engine.New(engine.Float32, c.n, c.o), engine.New(engine.Float32, c.n, c.o)
		dx, dw, db := engine.New(engine.Float32, c.n, c.in), engine.New(engine.Float32, c.o, c.in), engine.New(engine.Float32, c.o)
		opsMust(t, engine.LinearReLUForward(out, x, w, b))
		opsMust(t, engine.LinearReLUBackward(dx, dw, db, dpre, dout, out, x, w))
		fk := []string{"gemm_nt_64x64_f32"}
		if fsplits > 1 {
			fk = append(fk, "gemm_splitk_reduce_f32")
		}
		a, r := gemmTol(c.in + 1)
		checkKernels(t, fk, name+" out", fout, out, a, r)
		checkKernels(t, []string{"linear_bias_grad_f32"}, name+" dpre", fdpre, dpre, 0, 0)
		a, r = gemmTol(c.o)
		checkKernels(t, []string{"gemm_nn_64x64_f32"}, name+" dx", fdx, dx, a, r)
		a, r = gemmTol(2 * c.n)
		checkKernels(t, []string{"gemm_tn_64x64_f32"}, name+" dw", fdw, dw, a, r)
		checkKernels(t, []string{"linear_bias_grad_f32"}, name+" db", fdb, db, a, r)
	}
}

func b2i(v bool) int {
	if v {
		return 1
	}
	return 0
}
