package engine_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
)

// Tolerances. The CPU accumulates the statistics in float64, the kernels in
// float32 over trees of at most a few thousand values: the means and the
// normalised outputs agree to a few 1e-7 (atol 1e-5 + rtol 1e-5 leaves a
// wide margin without hiding a wrong formula, whose error would be O(1)).
// Gradients are sums of N·H·W (batch norm) or rows (layer norm) products,
// of size up to ~50 here, and dx is a difference of such sums: atol 1e-5,
// rtol 1e-4.
const (
	normFwdAtol, normFwdRtol = 1e-5, 1e-5
	normBwdAtol, normBwdRtol = 1e-5, 1e-4
)

var bnForwardKernels = []string{"batchnorm_stats_f32", "batchnorm_stats_finalize_f32", "batchnorm_apply_f32"}
var bnBackwardKernels = []string{"batchnorm_backward_reduce_f32", "batchnorm_backward_finalize_f32", "batchnorm_backward_apply_f32"}

// positive makes a random tensor usable as a running variance, its first
// channel's near eps (a constant or dead channel's), where sqrt(var + eps)
// and sqrt(var) + eps differ by 40%.
func positive(x *engine.Tensor) {
	for i := range x.Len() {
		x.SetAt(i, 0.5+x.At(i)*x.At(i))
	}
	x.SetAt(0, 1e-5)
}

func TestCUDABatchNorm(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(41, 42))
	shapes := [][]int{
		{2, 3, 5, 7},
		{1, 5, 3, 3},     // batch 1
		{4, 9},           // BatchNorm1d, C not a multiple of 8
		{3, 4, 5},        // (N,C,L)
		{2, 1, 1, 1},     // the fewest values training allows
		{1, 1, 45, 46},   // 2070 values per channel: two chunks
		{1, 2, 260, 260}, // 67600 values per channel: 34 chunks, two for two of the finalizing warp's lanes
	}
	for si, shape := range shapes {
		c := shape[1]
		x, dx := devRand(t, rng, shape...)
		engine.Scale(x, 3)
		for i := range x.Len() {
			x.SetAt(i, x.At(i)+1.5) // a mean away from zero
		}
		dx = dev(t, x)
		gamma, dgammaV := devRand(t, rng, c)
		beta, dbetaV := devRand(t, rng, c)
		rm, drm := devRand(t, rng, c)
		rv := randTensor(rng, engine.Float32, c)
		positive(rv)
		drv := dev(t, rv)
		affine := si%2 == 0 // odd shapes run without gamma/beta and running stats
		var g, b, dg, db, runM, runV, drunM, drunV *engine.Tensor
		if affine {
			g, b, dg, db, runM, runV, drunM, drunV = gamma, beta, dgammaV, dbetaV, rm, rv, drm, drv
		}

		// Training forward.
		out := engine.New(engine.Float32, shape...)
		mean, inv := engine.New(engine.Float32, c), engine.New(engine.Float32, c)
		opsMust(t, engine.BatchNorm2DForward(out, mean, inv, x, g, b, runM, runV, 0.1, 1e-5))
		dout := dev(t, engine.New(engine.Float32, shape...))
		dmean, dinv := dev(t, engine.New(engine.Float32, c)), dev(t, engine.New(engine.Float32, c))
		opsMust(t, engine.BatchNorm2DForward(dout, dmean, dinv, dx, dg, db, drunM, drunV, 0.1, 1e-5))
		checkKernels(t, bnForwardKernels, "BatchNorm2DForward out", dout, out, normFwdAtol, normFwdRtol)
		checkKernels(t, bnForwardKernels, "BatchNorm2DForward mean", dmean, mean, normFwdAtol, normFwdRtol)
		checkKernels(t, bnForwardKernels, "BatchNorm2DForward invstd", dinv, inv, normFwdAtol, normFwdRtol)
		if affine {
			checkKernels(t, bnForwardKernels, "BatchNorm2DForward running mean", drunM, runM, normFwdAtol, normFwdRtol)
			checkKernels(t, bnForwardKernels, "BatchNorm2DForward running var", drunV, runV, normFwdAtol, normFwdRtol)
		}

		// Training backward, twice: dx overwritten, dgamma and dbeta added.
		gout, dgout := devRand(t, rng, shape...)
		pg, dpg := devRand(t, rng, c)
		pb, dpb := devRand(t, rng, c)
		gx := engine.New(engine.Float32, shape...)
		dgx := dev(t, engine.New(engine.Float32, shape...))
		for range 2 {
			opsMust(t, engine.BatchNorm2DBackward(gx, pg, pb, gout, x, mean, inv, g))
			opsMust(t, engine.BatchNorm2DBackward(dgx, dpg, dpb, dgout, dx, dmean, dinv, dg))
		}
		checkKernels(t, bnBackwardKernels, "BatchNorm2DBackward dx", dgx, gx, normBwdAtol, normBwdRtol)
		checkKernels(t, bnBackwardKernels, "BatchNorm2DBackward dgamma", dpg, pg, normBwdAtol, normBwdRtol)
		checkKernels(t, bnBackwardKernels, "BatchNorm2DBackward dbeta", dpb, pb, normBwdAtol, normBwdRtol)

		// nil parameter gradients; then dx nil with dgamma only; then dx = dout.
		opsMust(t, engine.BatchNorm2DBackward(dgx, nil, nil, dgout, dx, dmean, dinv, dg))
		checkKernels(t, bnBackwardKernels, "BatchNorm2DBackward dx, no parameter gradients", dgx, gx, normBwdAtol, normBwdRtol)
		opsMust(t, engine.BatchNorm2DBackward(nil, pg, nil, gout, x, mean, inv, g))
		opsMust(t, engine.BatchNorm2DBackward(nil, dpg, nil, dgout, dx, dmean, dinv, dg))
		checkKernels(t, bnBackwardKernels, "BatchNorm2DBackward dgamma only", dpg, pg, normBwdAtol, normBwdRtol)
		inPlace := dev(t, gout)
		opsMust(t, engine.BatchNorm2DBackward(inPlace, nil, nil, inPlace, dx, dmean, dinv, dg))
		checkKernels(t, bnBackwardKernels, "BatchNorm2DBackward dx = dout", inPlace, gx, normBwdAtol, normBwdRtol)

		// Evaluation forward (also in place) and backward.
		eout := engine.New(engine.Float32, shape...)
		opsMust(t, engine.BatchNorm2DEvalForward(eout, x, g, b, rm, rv, 1e-5))
		deout := dev(t, engine.New(engine.Float32, shape...))
		opsMust(t, engine.BatchNorm2DEvalForward(deout, dx, dg, db, drm, drv, 1e-5))
		evalFwd := []string{"batchnorm_eval_coef_f32", "batchnorm_apply_f32"}
		checkKernels(t, evalFwd, "BatchNorm2DEvalForward", deout, eout, normFwdAtol, normFwdRtol)
		inPlace = dev(t, x)
		opsMust(t, engine.BatchNorm2DEvalForward(inPlace, inPlace, dg, db, drm, drv, 1e-5))
		checkKernels(t, evalFwd, "BatchNorm2DEvalForward in place", inPlace, eout, normFwdAtol, normFwdRtol)

		for range 2 {
			opsMust(t, engine.BatchNorm2DEvalBackward(gx, pg, pb, gout, x, g, rm, rv, 1e-5))
			opsMust(t, engine.BatchNorm2DEvalBackward(dgx, dpg, dpb, dgout, dx, dg, drm, drv, 1e-5))
		}
		checkKernels(t, bnBackwardKernels, "BatchNorm2DEvalBackward dx", dgx, gx, normBwdAtol, normBwdRtol)
		checkKernels(t, bnBackwardKernels, "BatchNorm2DEvalBackward dgamma", dpg, pg, normBwdAtol, normBwdRtol)
		checkKernels(t, bnBackwardKernels, "BatchNorm2DEvalBackward dbeta", dpb, pb, normBwdAtol, normBwdRtol)
		inPlace = dev(t, gout)
		opsMust(t, engine.BatchNorm2DEvalBackward(inPlace, nil, nil, inPlace, dx, dg, drm, drv, 1e-5))
		checkKernels(t, []string{"batchnorm_backward_finalize_f32", "batchnorm_backward_apply_f32"},
			"BatchNorm2DEvalBackward dx = dout, no parameter gradients", inPlace, gx, normBwdAtol, normBwdRtol)
	}
}

func TestCUDALayerNorm(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(43, 44))
	fwd := []string{"layernorm_forward_f32"}
	bwd := []string{"layernorm_backward_dx_f32"}
	params := []string{"layernorm_backward_params_f32", "norm_partials_add_f32"}
	for si, shape := range [][]int{{1, 1}, {3, 7}, {2, 5, 33}, {1, 70}, {20, 9}, {130, 5}} {
		d := shape[len(shape)-1]
		rows := 1
		for _, v := range shape[:len(shape)-1] {
			rows *= v
		}
		x, dx := devRand(t, rng, shape...)
		gamma, dgamma := devRand(t, rng, d)
		beta, dbeta := devRand(t, rng, d)
		if si == 2 { // no affine
			gamma, dgamma, beta, dbeta = nil, nil, nil, nil
		}
		out := engine.New(engine.Float32, shape...)
		mean, rstd := engine.New(engine.Float32, rows), engine.New(engine.Float32, rows)
		opsMust(t, engine.LayerNormForward(out, mean, rstd, x, gamma, beta, 1e-5))
		dout := dev(t, engine.New(engine.Float32, shape...))
		dmean, drstd := dev(t, engine.New(engine.Float32, rows)), dev(t, engine.New(engine.Float32, rows))
		opsMust(t, engine.LayerNormForward(dout, dmean, drstd, dx, dgamma, dbeta, 1e-5))
		checkKernels(t, fwd, "LayerNormForward", dout, out, normFwdAtol, normFwdRtol)
		checkKernels(t, fwd, "LayerNormForward mean", dmean, mean, normFwdAtol, normFwdRtol)
		checkKernels(t, fwd, "LayerNormForward rstd", drstd, rstd, normFwdAtol, normFwdRtol)
		// In place, without saved statistics.
		inPlace := dev(t, x)
		opsMust(t, engine.LayerNormForward(inPlace, nil, nil, inPlace, dgamma, dbeta, 1e-5))
		checkKernels(t, fwd, "LayerNormForward in place", inPlace, out, normFwdAtol, normFwdRtol)

		g, dg := devRand(t, rng, shape...)
		pg, dpg := devRand(t, rng, d)
		pb, dpb := devRand(t, rng, d)
		gx := engine.New(engine.Float32, shape...)
		dgx := dev(t, engine.New(engine.Float32, shape...))
		for range 2 {
			opsMust(t, engine.LayerNormBackward(gx, pg, pb, g, x, mean, rstd, gamma))
			opsMust(t, engine.LayerNormBackward(dgx, dpg, dpb, dg, dx, dmean, drstd, dgamma))
		}
		checkKernels(t, bwd, "LayerNormBackward dx", dgx, gx, normBwdAtol, normBwdRtol)
		checkKernels(t, params, "LayerNormBackward dgamma", dpg, pg, normBwdAtol, normBwdRtol)
		checkKernels(t, params, "LayerNormBackward dbeta", dpb, pb, normBwdAtol, normBwdRtol)
		// dbeta only, dx = dout.
		opsMust(t, engine.LayerNormBackward(nil, nil, pb, g, x, mean, rstd, gamma))
		opsMust(t, engine.LayerNormBackward(nil, nil, dpb, dg, dx, dmean, drstd, dgamma))
		checkKernels(t, params, "LayerNormBackward dbeta only", dpb, pb, normBwdAtol, normBwdRtol)
		// dx = dout, with the parameter gradients (which must read dout first).
		opsMust(t, engine.LayerNormBackward(g, pg, nil, g, x, mean, rstd, gamma))
		opsMust(t, engine.LayerNormBackward(dg, dpg, nil, dg, dx, dmean, drstd, dgamma))
		checkKernels(t, bwd, "LayerNormBackward dx = dout", dg, gx, normBwdAtol, normBwdRtol)
		checkKernels(t, params, "LayerNormBackward dgamma with dx = dout", dpg, pg, normBwdAtol, normBwdRtol)
	}
}

// The KILN_CUDA_CHECK rerun of the normalisation ops passes, in place too.
func TestCUDACheckSwitchNorm(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDACheck(true)
	defer engine.SetCUDACheck(false)
	rng := rand.New(rand.NewPCG(45, 46))
	_, x := devRand(t, rng, 2, 3, 4, 5)
	_, g := devRand(t, rng, 3)
	_, b := devRand(t, rng, 3)
	rm := dev(t, engine.New(engine.Float32, 3))
	rv := dev(t, engine.New(engine.Float32, 3))
	rv.Fill(1)
	out := dev(t, engine.New(engine.Float32, 2, 3, 4, 5))
	mean, inv := dev(t, engine.New(engine.Float32, 3)), dev(t, engine.New(engine.Float32, 3))
	opsMust(t, engine.BatchNorm2DForward(out, mean, inv, x, g, b, rm, rv, 0.1, 1e-5))
	dg, db := dev(t, engine.New(engine.Float32, 3)), dev(t, engine.New(engine.Float32, 3))
	opsMust(t, engine.BatchNorm2DBackward(out, dg, db, out, x, mean, inv, g))
	opsMust(t, engine.BatchNorm2DEvalForward(out, out, g, b, rm, rv, 1e-5))
	opsMust(t, engine.BatchNorm2DEvalBackward(out, dg, db, out, x, g, rm, rv, 1e-5))
	rout, rdx := dev(t, engine.New(engine.Float32, 2, 3, 4, 5)), dev(t, engine.New(engine.Float32, 2, 3, 4, 5))
	opsMust(t, engine.BatchNorm2DReLUForward(rout, mean, inv, x, g, b, rm, rv, 0.1, 1e-5))
	opsMust(t, engine.BatchNorm2DReLUBackward(rdx, dg, db, out, rout, x, mean, inv, g))

	_, lx := devRand(t, rng, 6, 10)
	_, lg := devRand(t, rng, 10)
	lout := dev(t, engine.New(engine.Float32, 6, 10))
	lm, ls := dev(t, engine.New(engine.Float32, 6)), dev(t, engine.New(engine.Float32, 6))
	opsMust(t, engine.LayerNormForward(lout, lm, ls, lx, lg, nil, 1e-5))
	ldg := dev(t, engine.New(engine.Float32, 10))
	opsMust(t, engine.LayerNormBackward(lout, ldg, nil, lout, lx, lm, ls, lg))
}

// On the GPU BatchNorm2DReLUForward and BatchNorm2DReLUBackward run in
// batch norm's own launches (three each way, the ReLU inside the apply and
// the reduce; two for a backward without dx), give the bits of batch norm
// then ReLU on the GPU (NaN and zeros included), and agree with the CPU's
// fused ops.
func TestCUDABatchNormReLU(t *testing.T) {
	cudaOrSkip(t)
	for i, shape := range [][]int{{4, 3, 5, 7}, {3, 2, 16, 16}, {6, 5}, {1, 1, 45, 46}} {
		rng := rand.New(rand.NewPCG(47, uint64(i)))
		x, dout := randTensor(rng, engine.Float32, shape...), randTensor(rng, engine.Float32, shape...)
		x.SetAt(3, 0)
		if x.Len() > 40 {
			x.SetAt(40, math.NaN())
		}
		ch := shape[1]
		gamma, beta := randTensor(rng, engine.Float32, ch), randTensor(rng, engine.Float32, ch)
		for j := range ch { // gammas away from 0
			gamma.SetAt(j, 1+gamma.At(j))
		}
		place := func(t *engine.Tensor) *engine.Tensor { return t }
		cpu := bnReLUOn(t, place, x, dout, gamma, beta, true)
		onGPU := func(h *engine.Tensor) *engine.Tensor { return dev(t, h) }
		opsMust(t, cuda.StartProfile())
		fused := bnReLUOn(t, onGPU, x, dout, gamma, beta, true)
		p, err := cuda.StopProfile()
		opsMust(t, err)
		if p.Launches != 3+3+2 {
			t.Errorf("%v: the fused ops took %d launches, want 8 (3 forward, 3 backward, 2 without dx)", shape, p.Launches)
		}
		apart := bnReLUOn(t, onGPU, x, dout, gamma, beta, false)
		names := []string{"out", "dx", "dgamma", "dbeta", "dgamma (no dx)", "dbeta (no dx)"}
		for k, name := range names {
			g, err := engine.ToCPU(nil, fused[k])
			opsMust(t, err)
			a, err := engine.ToCPU(nil, apart[k])
			opsMust(t, err)
			if !bitsEqual(g, a) {
				t.Errorf("%v %s: fused and separate ops differ on the GPU", shape, name)
			}
			ks, atol, rtol := bnBackwardKernels, normBwdAtol, normBwdRtol
			if k == 0 {
				ks, atol, rtol = bnForwardKernels, normFwdAtol, normFwdRtol
			}
			checkKernels(t, ks, fmt.Sprintf("%v fused %s", shape, name), fused[k], cpu[k], atol, rtol)
		}
	}
}

// bnReLUOn is bnThenReLU with every tensor made by place (the device).
func bnReLUOn(t testing.TB, place func(*engine.Tensor) *engine.Tensor, x, dout, gamma, beta *engine.Tensor, fused bool) []*engine.Tensor {
	ch := x.Dim(1)
	nw := func(shape ...int) *engine.Tensor { return place(engine.New(engine.Float32, shape...)) }
	xd, g, b, dy := place(x), place(gamma), place(beta), place(dout)
	out, dx := nw(x.Shape()...), nw(x.Shape()...)
	mean, invStd, rm := nw(ch), nw(ch), nw(ch)
	rvh := engine.New(engine.Float32, ch)
	opsMust(t, rvh.Fill(1))
	rv := place(rvh)
	dg, db, dg2, db2 := nw(ch), nw(ch), nw(ch), nw(ch)
	if fused {
		opsMust(t, engine.BatchNorm2DReLUForward(out, mean, invStd, xd, g, b, rm, rv, 0.1, 1e-5))
		opsMust(t, engine.BatchNorm2DReLUBackward(dx, dg, db, dy, out, xd, mean, invStd, g))
		opsMust(t, engine.BatchNorm2DReLUBackward(nil, dg2, db2, dy, out, xd, mean, invStd, g))
		return []*engine.Tensor{out, dx, dg, db, dg2, db2}
	}
	y, dyr := nw(x.Shape()...), nw(x.Shape()...)
	opsMust(t, engine.BatchNorm2DForward(y, mean, invStd, xd, g, b, rm, rv, 0.1, 1e-5))
	opsMust(t, engine.ActivationForward(out, y, engine.ReLU))
	opsMust(t, engine.ActivationBackward(dyr, dy, y, out, engine.ReLU))
	opsMust(t, engine.BatchNorm2DBackward(dx, dg, db, dyr, xd, mean, invStd, g))
	opsMust(t, engine.BatchNorm2DBackward(nil, dg2, db2, dyr, xd, mean, invStd, g))
	return []*engine.Tensor{out, dx, dg, db, dg2, db2}
}

// Batch norm's apply passes take four elements at a time where a plane's
// size is a multiple of 4 and the tensors are 16-byte aligned, one at a
// time otherwise: the same bits either way (x as a tensor of its own and as
// a view one element into a buffer), forward and backward, fused ReLU too.
// The emulator aborts on a misaligned 128-bit access, as the GPU faults.
func TestCUDABatchNormFourAtATime(t *testing.T) {
	cudaOrSkip(t)
	shape := []int{2, 3, 4, 6} // hw 24
	n := 2 * 3 * 4 * 6
	rng := rand.New(rand.NewPCG(48, 49))
	hx, hd := randTensor(rng, engine.Float32, shape...), randTensor(rng, engine.Float32, shape...)
	g, b := dev(t, randTensor(rng, engine.Float32, 3)), dev(t, randTensor(rng, engine.Float32, 3))
	// offset copies: every tensor of the pass one float into its buffer.
	offset := func(h *engine.Tensor) *engine.Tensor {
		buf := dev(t, engine.New(engine.Float32, n+1))
		v, err := buf.Rows(1, n)
		opsMust(t, err)
		v, err = v.Reshape(shape...)
		opsMust(t, err)
		opsMust(t, v.CopyFrom(h))
		return v
	}
	aligned := func(h *engine.Tensor) *engine.Tensor { return dev(t, h) }
	run := func(place func(*engine.Tensor) *engine.Tensor, relu bool) []*engine.Tensor {
		x, dout := place(hx), place(hd)
		out, dx := place(engine.New(engine.Float32, shape...)), place(engine.New(engine.Float32, shape...))
		mean, inv := dev(t, engine.New(engine.Float32, 3)), dev(t, engine.New(engine.Float32, 3))
		dg, db := dev(t, engine.New(engine.Float32, 3)), dev(t, engine.New(engine.Float32, 3))
		if relu {
			opsMust(t, engine.BatchNorm2DReLUForward(out, mean, inv, x, g, b, nil, nil, 0.1, 1e-5))
			opsMust(t, engine.BatchNorm2DReLUBackward(dx, dg, db, dout, out, x, mean, inv, g))
		} else {
			opsMust(t, engine.BatchNorm2DForward(out, mean, inv, x, g, b, nil, nil, 0.1, 1e-5))
			opsMust(t, engine.BatchNorm2DBackward(dx, dg, db, dout, x, mean, inv, g))
		}
		return []*engine.Tensor{out, dx, dg, db}
	}
	for _, relu := range []bool{false, true} {
		four, one := run(aligned, relu), run(offset, relu)
		for k, name := range []string{"out", "dx", "dgamma", "dbeta"} {
			a, err := engine.ToCPU(nil, four[k])
			opsMust(t, err)
			o, err := engine.ToCPU(nil, one[k])
			opsMust(t, err)
			if !bitsEqual(a, o) {
				t.Errorf("relu %v %s: four at a time and one at a time differ", relu, name)
			}
		}
	}
}
