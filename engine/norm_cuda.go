package engine

import (
	"math"

	"github.com/kiln-ml/kiln/cuda"
)

// The GPU side of norm.go: kernels/norm.cu. Parameter gradients are reduced
// in fixed-shape stages (per block, then chunk partials added in order by
// norm_partials_add_f32), never with atomics, so they are the same every run.

// optPtr is t's device pointer, or null for a nil tensor (an optional
// argument the kernel skips).
func optPtr(t *Tensor) cuda.Ptr {
	if t == nil {
		return 0
	}
	return t.dptr()
}

// devTemp allocates n float32s of scratch device memory; free gives it back
// to the cache. Kernels queued on the stream before a later allocation of
// the same memory still see their data, as launches are in order.
func devTemp(n int) (p cuda.Ptr, free func(), err error) {
	bytes := int64(4 * max(n, 1))
	if p, err = cuda.Alloc(bytes); err != nil {
		return 0, nil, err
	}
	return p, func() { cuda.Free(p, bytes) }, nil
}

// launchFit is launchElt with the block cut down to the whole warps that n
// needs, for the small per-channel and per-row launches.
func launchFit(k *cuda.Kernel, n int, a *cuda.Args) error {
	block := min(eltBlock, max(32, (n+31)/32*32))
	return cuda.Launch(k, cuda.D1(cuda.Blocks(n, block, eltMaxBlocks)), cuda.D1(block), 0, a)
}

// addPartials launches dst[i] += Σ_k partial[k·stride + i] for k < chunks;
// dst null does nothing.
func addPartials(dst, partial cuda.Ptr, chunks, n, stride int) error {
	if dst == 0 || n == 0 {
		return nil
	}
	var a cuda.Args
	return launchFit(kern.norm_partials_add_f32, n, a.Ptr(dst).Ptr(partial).Int(chunks).I64(int64(n)).I64(int64(stride)))
}

// ---- Layer norm over strided rows (shared with the spatial gating unit) ----

// rowWarps is the most warps (rows) per block of the warp-per-row kernels.
const rowWarps = 8

// rowLaunch is the grid and block of a warp-per-row kernel.
func rowLaunch(rows int) (grid, block cuda.Dim3) {
	w := max(1, min(rowWarps, rows))
	return cuda.D1(cuda.Blocks(rows, w, eltMaxBlocks)), cuda.D1(32 * w)
}

// layerNormRowsForward normalises rows rows of d values, row r of x at
// x + r·xStride floats, into out at out + r·outStride; mean, rstd, gamma,
// beta may be null.
func layerNormRowsForward(out, mean, rstd, x, gamma, beta cuda.Ptr, rows, d, xStride, outStride int, eps float64) error {
	var a cuda.Args
	a.Ptr(out).Ptr(mean).Ptr(rstd).Ptr(x).Ptr(gamma).Ptr(beta).Int(rows).Int(d).Int(xStride).Int(outStride).F32(float32(eps))
	grid, block := rowLaunch(rows)
	return cuda.Launch(kern.layernorm_forward_f32, grid, block, 0, &a)
}

// layerNormRowsBackward writes dx (if not null) and adds Σ dout·x̂ into dgamma
// and Σ dout into dbeta (each if not null) over strided rows.
func layerNormRowsBackward(dx, dgamma, dbeta, dout, x, mean, rstd, gamma cuda.Ptr, rows, d, dxStride, doutStride, xStride int) error {
	if rows == 0 {
		return nil
	}
	// The parameter gradients first: dx may be dout.
	if err := layerNormParams(dgamma, dbeta, dout, x, mean, rstd, rows, d, doutStride, xStride); err != nil {
		return err
	}
	if dx == 0 {
		return nil
	}
	var a cuda.Args
	a.Ptr(dx).Ptr(dout).Ptr(x).Ptr(mean).Ptr(rstd).Ptr(gamma).Int(rows).Int(d).Int(dxStride).Int(doutStride).Int(xStride)
	grid, block := rowLaunch(rows)
	return cuda.Launch(kern.layernorm_backward_dx_f32, grid, block, 0, &a)
}

// layerNormParams adds Σ dout·x̂ into dgamma and Σ dout into dbeta (either
// may be null) over strided rows.
func layerNormParams(dgamma, dbeta, dout, x, mean, rstd cuda.Ptr, rows, d, doutStride, xStride int) error {
	if dgamma == 0 && dbeta == 0 {
		return nil
	}
	// About 128 chunks of rows, each block 32 columns (fewer if d is) × 8 row
	// lanes.
	perChunk := max(8, (rows+127)/128)
	chunks := (rows + perChunk - 1) / perChunk
	partial, free, err := devTemp(2 * chunks * d)
	if err != nil {
		return err
	}
	defer free()
	var a cuda.Args
	a.Ptr(partial).Ptr(dout).Ptr(x).Ptr(mean).Ptr(rstd).Int(rows).Int(d).Int(doutStride).Int(xStride).Int(perChunk)
	bx := min(32, d)
	if err := cuda.Launch(kern.layernorm_backward_params_f32, cuda.Dim3{X: uint32((d + bx - 1) / bx), Y: uint32(chunks), Z: 1},
		cuda.Dim3{X: uint32(bx), Y: 8, Z: 1}, 0, &a); err != nil {
		return err
	}
	if err := addPartials(dgamma, partial, chunks, d, 2*d); err != nil {
		return err
	}
	return addPartials(dbeta, partial+cuda.Ptr(4*d), chunks, d, 2*d)
}

func layerNormForwardCUDA(out, mean, rstd, x, gamma, beta *Tensor, rows, d int, eps float64) error {
	return runCUDA("LayerNormForward", func() error {
		return layerNormRowsForward(out.dptr(), optPtr(mean), optPtr(rstd), x.dptr(), optPtr(gamma), optPtr(beta),
			rows, d, d, d, eps)
	}, func(host hostCopy) error {
		return LayerNormForward(host(out), host(mean), host(rstd), host(x), host(gamma), host(beta), eps)
	}, out, mean, rstd, x, gamma, beta)
}

func layerNormBackwardCUDA(dx, dgamma, dbeta, dout, x, mean, rstd, gamma *Tensor, rows, d int) error {
	return runCUDA("LayerNormBackward", func() error {
		return layerNormRowsBackward(optPtr(dx), optPtr(dgamma), optPtr(dbeta), dout.dptr(), x.dptr(), mean.dptr(),
			rstd.dptr(), optPtr(gamma), rows, d, d, d, d)
	}, func(host hostCopy) error {
		return LayerNormBackward(host(dx), host(dgamma), host(dbeta), host(dout), host(x), host(mean), host(rstd), host(gamma))
	}, dx, dgamma, dbeta, dout, x, mean, rstd, gamma)
}

// ---- Batch norm ----

// bnChunk is how many of a channel's N·H·W values one block reduces; the
// chunks' results are combined in a fixed order by one warp per channel.
const bnChunk = 2048

// bnBlockFor is the block size of the batch-norm reductions: 256 threads,
// fewer when a channel has fewer values.
func bnBlockFor(m int) int { return min(256, max(32, (min(m, bnChunk)+31)/32*32)) }

func bnChunks(m int) int { return (m + bnChunk - 1) / bnChunk }

// batchNormForwardCUDA is BatchNorm2DForward on the GPU, or with relu
// BatchNorm2DReLUForward: the ReLU applied by the same pass.
func batchNormForwardCUDA(op string, relu bool, out, saveMean, saveInvStd, x, gamma, beta, runMean, runVar *Tensor,
	momentum, eps float64) error {
	n, c, hw := batchNormDims(x)
	return runCUDA(op, func() error {
		if c == 0 {
			return nil
		}
		m := n * hw
		chunks := bnChunks(m)
		partial, free, err := devTemp(2*chunks*c + 2*c)
		if err != nil {
			return err
		}
		defer free()
		coef := partial + cuda.Ptr(4*2*chunks*c)
		var a cuda.Args
		a.Ptr(partial).Ptr(x.dptr()).Int(n).Int(c).Int(hw).Int(bnChunk)
		if err := cuda.Launch(kern.batchnorm_stats_f32, cuda.Dim3{X: uint32(chunks), Y: uint32(c), Z: 1}, cuda.D1(bnBlockFor(m)), 0, &a); err != nil {
			return err
		}
		var f cuda.Args
		f.Ptr(coef).Ptr(saveMean.dptr()).Ptr(saveInvStd.dptr()).Ptr(optPtr(runMean)).Ptr(optPtr(runVar)).Ptr(partial).
			Ptr(optPtr(gamma)).Ptr(optPtr(beta)).Int(c).Int(chunks).I64(int64(m)).Int(bnChunk).
			U64(math.Float64bits(momentum)).U64(math.Float64bits(eps))
		if err := cuda.Launch(kern.batchnorm_stats_finalize_f32, cuda.D1(c), cuda.D1(32), 0, &f); err != nil {
			return err
		}
		return batchNormApply(out, x, coef, c, hw, relu)
	}, func(host hostCopy) error {
		forward := BatchNorm2DForward
		if relu {
			forward = BatchNorm2DReLUForward
		}
		return forward(host(out), host(saveMean), host(saveInvStd), host(x), host(gamma), host(beta), host(runMean), host(runVar), momentum, eps)
	}, out, saveMean, saveInvStd, x, gamma, beta, runMean, runVar)
}

func batchNormApply(out, x *Tensor, coef cuda.Ptr, c, hw int, relu bool) error {
	total := x.Len()
	var a cuda.Args
	a.Ptr(out.dptr()).Ptr(x.dptr()).Ptr(coef).Int(c).Int(hw).I64(int64(total)).Bool(relu)
	return launchFit(kern.batchnorm_apply_f32, total, &a)
}

func batchNormEvalForwardCUDA(out, x, gamma, beta, runMean, runVar *Tensor, eps float64) error {
	_, c, hw := batchNormDims(x)
	return runCUDA("BatchNorm2DEvalForward", func() error {
		if c == 0 {
			return nil
		}
		coef, free, err := devTemp(2 * c)
		if err != nil {
			return err
		}
		defer free()
		var a cuda.Args
		a.Ptr(coef).Ptr(optPtr(gamma)).Ptr(optPtr(beta)).Ptr(runMean.dptr()).Ptr(runVar.dptr()).Int(c).U64(math.Float64bits(eps))
		if err := launchFit(kern.batchnorm_eval_coef_f32, c, &a); err != nil {
			return err
		}
		return batchNormApply(out, x, coef, c, hw, false)
	}, func(host hostCopy) error {
		return BatchNorm2DEvalForward(host(out), host(x), host(gamma), host(beta), host(runMean), host(runVar), eps)
	}, out, x, gamma, beta, runMean, runVar)
}

// batchNormBackwardCUDA is both backward passes: training (runVar nil; mean
// and invStd the saved batch statistics) and evaluation (mean the running
// mean, runVar given, invStd nil). A non-nil reluOut masks dout, as ReLU's
// backward, in the same passes.
func batchNormBackwardCUDA(dx, dgamma, dbeta, dout, reluOut, x, mean, invStd, runVar, gamma *Tensor, eps float64) error {
	n, c, hw := batchNormDims(x)
	m := n * hw
	if c == 0 {
		return nil
	}
	eval := runVar != nil
	chunks := bnChunks(m)
	if eval && dgamma == nil && dbeta == nil || m == 0 {
		chunks = 0 // only k = γ/σ is needed
	}
	partial, free, err := devTemp(2*chunks*c + 3*c)
	if err != nil {
		return err
	}
	defer free()
	coef := partial + cuda.Ptr(4*2*chunks*c)
	if chunks > 0 {
		var a cuda.Args
		a.Ptr(partial).Ptr(dout.dptr()).Ptr(x.dptr()).Ptr(mean.dptr()).Int(n).Int(c).Int(hw).Int(bnChunk).Ptr(optPtr(reluOut))
		if err := cuda.Launch(kern.batchnorm_backward_reduce_f32, cuda.Dim3{X: uint32(chunks), Y: uint32(c), Z: 1}, cuda.D1(bnBlockFor(m)), 0, &a); err != nil {
			return err
		}
	}
	var f cuda.Args
	f.Ptr(coef).Ptr(optPtr(dgamma)).Ptr(optPtr(dbeta)).Ptr(partial).Ptr(mean.dptr()).Ptr(optPtr(invStd)).
		Ptr(optPtr(runVar)).Ptr(optPtr(gamma)).Int(c).Int(chunks).I64(int64(m)).U64(math.Float64bits(eps))
	if err := cuda.Launch(kern.batchnorm_backward_finalize_f32, cuda.D1(c), cuda.D1(32), 0, &f); err != nil {
		return err
	}
	if dx == nil {
		return nil
	}
	xp := x.dptr()
	if eval {
		xp = 0
	}
	total := dout.Len()
	var a cuda.Args
	a.Ptr(dx.dptr()).Ptr(dout.dptr()).Ptr(xp).Ptr(coef).Int(c).Int(hw).I64(int64(total)).Ptr(optPtr(reluOut))
	return launchFit(kern.batchnorm_backward_apply_f32, total, &a)
}

// batchNormTrainBackwardCUDA is BatchNorm2DBackward on the GPU, or with
// reluOut BatchNorm2DReLUBackward.
func batchNormTrainBackwardCUDA(op string, dx, dgamma, dbeta, dout, reluOut, x, saveMean, saveInvStd, gamma *Tensor) error {
	return runCUDA(op, func() error {
		return batchNormBackwardCUDA(dx, dgamma, dbeta, dout, reluOut, x, saveMean, saveInvStd, nil, gamma, 0)
	}, func(host hostCopy) error {
		if reluOut != nil {
			return BatchNorm2DReLUBackward(host(dx), host(dgamma), host(dbeta), host(dout), host(reluOut), host(x), host(saveMean), host(saveInvStd), host(gamma))
		}
		return BatchNorm2DBackward(host(dx), host(dgamma), host(dbeta), host(dout), host(x), host(saveMean), host(saveInvStd), host(gamma))
	}, dx, dgamma, dbeta, dout, reluOut, x, saveMean, saveInvStd, gamma)
}

func batchNormEvalBackwardCUDA(dx, dgamma, dbeta, dout, x, gamma, runMean, runVar *Tensor, eps float64) error {
	return runCUDA("BatchNorm2DEvalBackward", func() error {
		return batchNormBackwardCUDA(dx, dgamma, dbeta, dout, nil, x, runMean, nil, runVar, gamma, eps)
	}, func(host hostCopy) error {
		return BatchNorm2DEvalBackward(host(dx), host(dgamma), host(dbeta), host(dout), host(x), host(gamma), host(runMean), host(runVar), eps)
	}, dx, dgamma, dbeta, dout, x, gamma, runMean, runVar)
}
