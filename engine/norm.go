package engine

import (
	"fmt"
	"math"
)

// Normalisation: BatchNorm over the batch and spatial axes of (N,C,…) inputs
// and LayerNorm over the last axis, both as PyTorch defines them. Statistics
// and their reductions are accumulated in float64 whatever the dtype.

// DefaultNormEps is PyTorch's default ε for BatchNorm and LayerNorm.
const DefaultNormEps = 1e-5

// DefaultBatchNormMomentum is PyTorch's default running-statistics momentum.
const DefaultBatchNormMomentum = 0.1

// BatchNorm2DForward is batch normalisation in training mode: each channel is
// normalised with the mean and biased variance of its N·H·W values, then
// scaled by gamma and shifted by beta. The channel mean and 1/√(var+ε) are
// saved for the backward pass. When runMean and runVar are given they are
// updated as PyTorch does, with the unbiased variance:
//
//	run = (1−momentum)·run + momentum·batch_stat
//
// Inputs of any rank ≥ 2 are accepted: (N,C) is BatchNorm1d, (N,C,L) and
// (N,C,H,W) are treated alike. A channel needs more than one value.
//
//	out: (N,C,…)  saveMean, saveInvStd: (C)  x: (N,C,…)
//	gamma, beta: (C) or nil (no affine)  runMean, runVar: (C) or nil
func BatchNorm2DForward(out, saveMean, saveInvStd, x, gamma, beta, runMean, runVar *Tensor, momentum, eps float64) error {
	return batchNormForward("BatchNorm2DForward", false, out, saveMean, saveInvStd, x, gamma, beta, runMean, runVar,
		momentum, eps)
}

// BatchNorm2DReLUForward is BatchNorm2DForward then ReLU in one pass:
// out = max(BN(x), 0), the bits of the two ops one after the other, without
// the separate pass over the activations that ReLU would take. Its backward
// is BatchNorm2DReLUBackward.
func BatchNorm2DReLUForward(out, saveMean, saveInvStd, x, gamma, beta, runMean, runVar *Tensor, momentum, eps float64) error {
	return batchNormForward("BatchNorm2DReLUForward", true, out, saveMean, saveInvStd, x, gamma, beta, runMean, runVar,
		momentum, eps)
}

func batchNormForward(op string, relu bool, out, saveMean, saveInvStd, x, gamma, beta, runMean, runVar *Tensor,
	momentum, eps float64) error {
	if out == nil || saveMean == nil || saveInvStd == nil {
		return shapeErr(op, "out, saveMean and saveInvStd are required",
			"out", out, "saveMean", saveMean, "saveInvStd", saveInvStd)
	}
	dt, err := checkBatchNorm(op, x, [2]*Tensor{out}, [6]*Tensor{gamma, beta, runMean, runVar, saveMean, saveInvStd})
	if err == errBatchNormShape {
		return shapeErr(op, "want x and out (N,C,…), the others (C)", "out", out, "saveMean", saveMean,
			"saveInvStd", saveInvStd, "x", x, "gamma", gamma, "beta", beta, "runMean", runMean, "runVar", runVar)
	}
	if err != nil {
		return err
	}
	if (runMean == nil) != (runVar == nil) {
		return shapeErr(op, "give both running statistics or neither", "runMean", runMean, "runVar", runVar)
	}
	if !(momentum >= 0 && momentum <= 1) || !(eps >= 0) {
		return &ShapeError{Op: op, Msg: fmt.Sprintf("momentum %v outside [0,1] or negative eps %v", momentum, eps)}
	}
	n, c, hw := batchNormDims(x)
	if n*hw < 2 {
		return shapeErr(op, "training needs more than one value per channel", "x", x)
	}
	if x.device == CUDA {
		return batchNormForwardCUDA(op, relu, out, saveMean, saveInvStd, x, gamma, beta, runMean, runVar, momentum, eps)
	}
	pick(dt, runBatchNorm[float32], runBatchNorm[float64])(batchNormArgs{mode: batchNormTrain, relu: relu, out: out,
		x: x, gamma: gamma, beta: beta, mean: saveMean, invStd: saveInvStd,
		runMean: runMean, runVar: runVar, momentum: momentum, eps: eps, n: n, c: c, hw: hw})
	return nil
}

// BatchNorm2DEvalForward is batch normalisation in evaluation mode: each
// channel is normalised with the running statistics. out may be x itself.
//
//	out: (N,C,…)  x: (N,C,…)  gamma, beta: (C) or nil  runMean, runVar: (C)
func BatchNorm2DEvalForward(out, x, gamma, beta, runMean, runVar *Tensor, eps float64) error {
	const op = "BatchNorm2DEvalForward"
	if out == nil || runMean == nil || runVar == nil {
		return shapeErr(op, "out, runMean and runVar are required", "out", out, "runMean", runMean, "runVar", runVar)
	}
	dt, err := checkBatchNorm(op, x, [2]*Tensor{out}, [6]*Tensor{gamma, beta, runMean, runVar})
	if err == errBatchNormShape {
		return shapeErr(op, "want x and out (N,C,…), the others (C)", "out", out, "x", x,
			"gamma", gamma, "beta", beta, "runMean", runMean, "runVar", runVar)
	}
	if err != nil {
		return err
	}
	if x.device == CUDA {
		return batchNormEvalForwardCUDA(out, x, gamma, beta, runMean, runVar, eps)
	}
	n, c, hw := batchNormDims(x)
	pick(dt, runBatchNorm[float32], runBatchNorm[float64])(batchNormArgs{mode: batchNormEval, out: out, x: x,
		gamma: gamma, beta: beta, runMean: runMean, runVar: runVar, eps: eps, n: n, c: c, hw: hw})
	return nil
}

// BatchNorm2DBackward is the training-mode backward pass. With x̂ the
// normalised input and M = N·H·W values per channel:
//
//	dbeta  += Σ dout           dgamma += Σ dout·x̂
//	dx      = γ/σ · (dout − Σdout/M − x̂·Σ(dout·x̂)/M)
//
// dx is overwritten (it may be dout itself); dgamma and dbeta accumulate. Any
// gradient may be nil; gamma nil means no affine transform.
//
//	dx: (N,C,…)  dgamma, dbeta: (C)  dout, x: (N,C,…)  saveMean, saveInvStd, gamma: (C)
func BatchNorm2DBackward(dx, dgamma, dbeta, dout, x, saveMean, saveInvStd, gamma *Tensor) error {
	return batchNormTrainBackward("BatchNorm2DBackward", dx, dgamma, dbeta, dout, nil, x, saveMean, saveInvStd, gamma)
}

// BatchNorm2DReLUBackward is the backward pass of BatchNorm2DReLUForward:
// dout is the gradient of its output out, which passes where out > 0 (as
// ReLU's backward) into BatchNorm2DBackward's sums and dx, in the same
// passes.
//
//	dx: (N,C,…)  dgamma, dbeta: (C)  dout, out, x: (N,C,…)  saveMean, saveInvStd, gamma: (C)
func BatchNorm2DReLUBackward(dx, dgamma, dbeta, dout, out, x, saveMean, saveInvStd, gamma *Tensor) error {
	const op = "BatchNorm2DReLUBackward"
	if out == nil || dout == nil || !out.SameShape(dout.Shape()...) {
		return shapeErr(op, "want out (the forward's output) shaped as dout", "out", out, "dout", dout)
	}
	return batchNormTrainBackward(op, dx, dgamma, dbeta, dout, out, x, saveMean, saveInvStd, gamma)
}

// batchNormTrainBackward runs the backward pass; a non-nil reluOut masks dout.
func batchNormTrainBackward(op string, dx, dgamma, dbeta, dout, reluOut, x, saveMean, saveInvStd, gamma *Tensor) error {
	if dout == nil || saveMean == nil || saveInvStd == nil {
		return shapeErr(op, "dout, saveMean and saveInvStd are required",
			"dout", dout, "saveMean", saveMean, "saveInvStd", saveInvStd)
	}
	dt, err := checkBatchNorm(op, x, [2]*Tensor{dx, dout}, [6]*Tensor{gamma, dgamma, dbeta, saveMean, saveInvStd})
	if err == errBatchNormShape {
		return shapeErr(op, "want dx, dout and x (N,C,…), the others (C)", "dx", dx, "dgamma", dgamma,
			"dbeta", dbeta, "dout", dout, "x", x, "saveMean", saveMean, "saveInvStd", saveInvStd, "gamma", gamma)
	}
	if err != nil {
		return err
	}
	if reluOut != nil {
		if _, _, err := agreeDev(op, reluOut, x); err != nil {
			return err
		}
	}
	if x.device == CUDA {
		return batchNormTrainBackwardCUDA(op, dx, dgamma, dbeta, dout, reluOut, x, saveMean, saveInvStd, gamma)
	}
	n, c, hw := batchNormDims(x)
	pick(dt, runBatchNorm[float32], runBatchNorm[float64])(batchNormArgs{mode: batchNormBackward, out: dx, x: x,
		dout: dout, reluOut: reluOut, gamma: gamma, dgamma: dgamma, dbeta: dbeta,
		mean: saveMean, invStd: saveInvStd, n: n, c: c, hw: hw})
	return nil
}

// BatchNorm2DEvalBackward is the backward pass of BatchNorm2DEvalForward,
// where the running statistics are constants (frozen batch norm, saliency
// maps). With σ = √(runVar+ε) and x̂ = (x − runMean)/σ:
//
//	dx = dout·γ/σ   dgamma += Σ dout·x̂   dbeta += Σ dout
//
// dx is overwritten (it may be dout itself); dgamma and dbeta accumulate. Any
// gradient may be nil.
//
//	dx: (N,C,…)  dgamma, dbeta: (C)  dout, x: (N,C,…)  gamma: (C) or nil  runMean, runVar: (C)
func BatchNorm2DEvalBackward(dx, dgamma, dbeta, dout, x, gamma, runMean, runVar *Tensor, eps float64) error {
	const op = "BatchNorm2DEvalBackward"
	if dout == nil || runMean == nil || runVar == nil {
		return shapeErr(op, "dout, runMean and runVar are required", "dout", dout, "runMean", runMean, "runVar", runVar)
	}
	dt, err := checkBatchNorm(op, x, [2]*Tensor{dx, dout}, [6]*Tensor{gamma, dgamma, dbeta, runMean, runVar})
	if err == errBatchNormShape {
		return shapeErr(op, "want dx, dout and x (N,C,…), the others (C)", "dx", dx, "dgamma", dgamma,
			"dbeta", dbeta, "dout", dout, "x", x, "gamma", gamma, "runMean", runMean, "runVar", runVar)
	}
	if err != nil {
		return err
	}
	if x.device == CUDA {
		return batchNormEvalBackwardCUDA(dx, dgamma, dbeta, dout, x, gamma, runMean, runVar, eps)
	}
	n, c, hw := batchNormDims(x)
	pick(dt, runBatchNorm[float32], runBatchNorm[float64])(batchNormArgs{mode: batchNormEvalBackward, out: dx, x: x,
		dout: dout, gamma: gamma, dgamma: dgamma, dbeta: dbeta,
		runMean: runMean, runVar: runVar, eps: eps, n: n, c: c, hw: hw})
	return nil
}

// errBatchNormShape tells a BatchNorm entry point to report its arguments.
var errBatchNormShape = &ShapeError{}

// checkBatchNorm checks x (N,C,…), the tensors shaped like x (full) and the
// per-channel tensors (perC, (C)); nil entries are skipped. On a shape
// mismatch it returns errBatchNormShape and the caller builds the error.
func checkBatchNorm(op string, x *Tensor, full [2]*Tensor, perC [6]*Tensor) (DType, error) {
	if x == nil {
		return 0, shapeErr(op, "x is required", "x", x)
	}
	_, dt, err := agreeDev(op, x, full[0], full[1], perC[0], perC[1], perC[2], perC[3], perC[4], perC[5])
	if err != nil {
		return 0, err
	}
	bad := x.Rank() < 2
	for _, f := range full {
		bad = bad || (f != nil && !sameShape(f.shape, x.shape))
	}
	for _, p := range perC {
		bad = bad || (p != nil && (p.Rank() != 1 || p.shape[0] != x.shape[1]))
	}
	if bad {
		return 0, errBatchNormShape
	}
	return dt, nil
}

func batchNormDims(x *Tensor) (n, c, hw int) {
	return x.shape[0], x.shape[1], numel(x.shape[2:])
}

const (
	batchNormTrain = iota
	batchNormEval
	batchNormBackward
	batchNormEvalBackward
)

type batchNormTask[T Float] struct {
	mode                          int
	relu                          bool // forward: out = max(BN(x), 0)
	out, x, dout                  []T  // out is dx in the backward pass
	reluOut                       []T  // backward: dout passes where reluOut > 0 (nil: everywhere)
	gamma, beta, dgamma, dbeta    []T
	mean, invStd, runMean, runVar []T
	momentum, eps                 float64
	n, c, hw                      int
}

var batchNormTasks = [2]taskPool{
	{New: func() any { return new(batchNormTask[float32]) }},
	{New: func() any { return new(batchNormTask[float64]) }},
}

// batchNormArgs are one batch norm call: its tensors (nil where the mode reads
// none) and sizes, bound to a batchNormTask of their dtype by runBatchNorm.
type batchNormArgs struct {
	mode                          int
	relu                          bool
	out, x, dout, reluOut         *Tensor // out is dx in the backward pass
	gamma, beta, dgamma, dbeta    *Tensor
	mean, invStd, runMean, runVar *Tensor
	momentum, eps                 float64
	n, c, hw                      int
}

// runBatchNorm splits the channels over the workers; channels are
// independent, so the result does not depend on the split.
func runBatchNorm[T Float](a batchNormArgs) {
	args := &batchNormTask[T]{mode: a.mode, relu: a.relu, out: dataAs[T](a.out), x: dataAs[T](a.x),
		dout: dataAs[T](a.dout), reluOut: dataAs[T](a.reluOut),
		gamma: dataAs[T](a.gamma), beta: dataAs[T](a.beta), dgamma: dataAs[T](a.dgamma), dbeta: dataAs[T](a.dbeta),
		mean: dataAs[T](a.mean), invStd: dataAs[T](a.invStd), runMean: dataAs[T](a.runMean),
		runVar: dataAs[T](a.runVar), momentum: a.momentum, eps: a.eps, n: a.n, c: a.c, hw: a.hw}
	if args.n*args.c*args.hw < parallelMinElems {
		args.run(0, 0, args.c)
		return
	}
	p := &batchNormTasks[dtypeIndex[T]()]
	t := p.Get().(*batchNormTask[T])
	*t = *args
	parallelFor(args.c, t)
	*t = batchNormTask[T]{}
	p.Put(t)
}

func (t *batchNormTask[T]) run(_, lo, hi int) {
	for ch := lo; ch < hi; ch++ {
		switch t.mode {
		case batchNormTrain:
			t.train(ch)
		case batchNormEval:
			t.eval(ch)
		case batchNormEvalBackward:
			t.evalBackward(ch)
		default:
			t.backward(ch)
		}
	}
}

// plane is channel ch's block of sample i.
func (t *batchNormTask[T]) plane(s []T, i, ch int) []T {
	o := (i*t.c + ch) * t.hw
	return s[o : o+t.hw]
}

func (t *batchNormTask[T]) affine(ch int) (g, b float64) {
	g = 1
	if t.gamma != nil {
		g = float64(t.gamma[ch])
	}
	if t.beta != nil {
		b = float64(t.beta[ch])
	}
	return g, b
}

// apply writes out = a·x + b over channel ch (then max(·, 0) with relu, as
// ReLU does it: a NaN passes).
func (t *batchNormTask[T]) apply(ch int, a, b float64) {
	aT, bT := T(a), T(b)
	if bnApplyC(t, ch, aT, bT) {
		return
	}
	for i := 0; i < t.n; i++ {
		x, out := t.plane(t.x, i, ch), t.plane(t.out, i, ch)
		for j, v := range x {
			y := aT*v + bT
			if t.relu && y < 0 {
				y = 0
			}
			out[j] = y
		}
	}
}

// gradAt is dout's element j of sample i's block of channel ch, zero where
// the fused ReLU's output was not positive.
func (t *batchNormTask[T]) gradAt(dout []T, i, ch, j int) T {
	if t.reluOut != nil && !(t.plane(t.reluOut, i, ch)[j] > 0) {
		return 0
	}
	return dout[j]
}

func (t *batchNormTask[T]) train(ch int) {
	m := float64(t.n * t.hw)
	mean, ss, ok := bnMomentsC(t, ch)
	if !ok {
		mean, ss = bnPlaneMoments(t, ch, m) // norm_sync.go
	}
	invStd := 1 / math.Sqrt(ss/m+t.eps)
	t.mean[ch], t.invStd[ch] = T(mean), T(invStd)
	if t.runMean != nil {
		mo := t.momentum
		t.runMean[ch] = T((1-mo)*float64(t.runMean[ch]) + mo*mean)
		t.runVar[ch] = T((1-mo)*float64(t.runVar[ch]) + mo*ss/(m-1))
	}
	g, b := t.affine(ch)
	t.apply(ch, g*invStd, b-mean*g*invStd)
}

func (t *batchNormTask[T]) eval(ch int) {
	g, b := t.affine(ch)
	a := g / math.Sqrt(float64(t.runVar[ch])+t.eps)
	t.apply(ch, a, b-float64(t.runMean[ch])*a)
}

func (t *batchNormTask[T]) backward(ch int) {
	mean, invStd := float64(t.mean[ch]), float64(t.invStd[ch])
	sumD, sumDX, ok := bnBackwardSumsC(t, ch, mean)
	if !ok {
		for i := 0; i < t.n; i++ {
			x, dout := t.plane(t.x, i, ch), t.plane(t.dout, i, ch)
			for j := range dout {
				d := t.gradAt(dout, i, ch, j)
				sumD += float64(d)
				sumDX += float64(d) * (float64(x[j]) - mean)
			}
		}
	}
	sumDX *= invStd // Σ dout·x̂
	if t.dbeta != nil {
		t.dbeta[ch] += T(sumD)
	}
	if t.dgamma != nil {
		t.dgamma[ch] += T(sumDX)
	}
	if t.out == nil {
		return
	}
	g, _ := t.affine(ch)
	m := float64(t.n * t.hw)
	// dx = k·(dout − sumD/M − x̂·sumDX/M) = k·dout + a·x + b, with k = γ/σ.
	k := g * invStd
	a := -k * invStd * sumDX / m
	b := -k*sumD/m - a*mean
	kT, aT, bT := T(k), T(a), T(b)
	if bnBackwardDxC(t, ch, kT, aT, bT) {
		return
	}
	for i := 0; i < t.n; i++ {
		x, dout, dx := t.plane(t.x, i, ch), t.plane(t.dout, i, ch), t.plane(t.out, i, ch)
		for j := range dout {
			dx[j] = kT*t.gradAt(dout, i, ch, j) + aT*x[j] + bT
		}
	}
}

func (t *batchNormTask[T]) evalBackward(ch int) {
	mean := float64(t.runMean[ch])
	invStd := 1 / math.Sqrt(float64(t.runVar[ch])+t.eps)
	if t.dgamma != nil || t.dbeta != nil {
		sumD, sumDX := 0.0, 0.0
		for i := 0; i < t.n; i++ {
			x, dout := t.plane(t.x, i, ch), t.plane(t.dout, i, ch)
			for j, d := range dout {
				sumD += float64(d)
				sumDX += float64(d) * (float64(x[j]) - mean)
			}
		}
		if t.dbeta != nil {
			t.dbeta[ch] += T(sumD)
		}
		if t.dgamma != nil {
			t.dgamma[ch] += T(sumDX * invStd)
		}
	}
	if t.out == nil {
		return
	}
	g, _ := t.affine(ch)
	k := T(g * invStd)
	for i := 0; i < t.n; i++ {
		dout, dx := t.plane(t.dout, i, ch), t.plane(t.out, i, ch)
		for j, d := range dout {
			dx[j] = k * d
		}
	}
}

// LayerNormForward normalises each row of the last axis to zero mean and unit
// (biased) variance, then scales by gamma and shifts by beta, as
// torch.nn.LayerNorm(D). mean and rstd = 1/√(var+ε) of each row are saved for
// the backward pass; they may be nil when none follows. out may be x itself.
//
//	out: (…,D)  mean, rstd: one value per row, e.g. (…) or (rows)
//	x: (…,D)  gamma, beta: (D) or nil
func LayerNormForward(out, mean, rstd, x, gamma, beta *Tensor, eps float64) error {
	const op = "LayerNormForward"
	if out == nil {
		return shapeErr(op, "out is required", "out", out)
	}
	if x == nil {
		return shapeErr(op, "x is required", "x", x)
	}
	_, dt, err := agreeDev(op, out, mean, rstd, x, gamma, beta)
	if err != nil {
		return err
	}
	rows, d, ok := layerNormDims(x, [2]*Tensor{out}, [2]*Tensor{mean, rstd}, [3]*Tensor{gamma, beta})
	if !ok {
		return shapeErr(op, "want x and out (…,D), mean and rstd one per row, gamma and beta (D)",
			"out", out, "mean", mean, "rstd", rstd, "x", x, "gamma", gamma, "beta", beta)
	}
	if !(eps >= 0) {
		return &ShapeError{Op: op, Msg: fmt.Sprintf("negative eps %v", eps)}
	}
	if x.device == CUDA {
		return layerNormForwardCUDA(out, mean, rstd, x, gamma, beta, rows, d, eps)
	}
	pick(dt, runLayerNorm[float32], runLayerNorm[float64])(layerNormArgs{out: out, x: x, mean: mean, rstd: rstd,
		gamma: gamma, beta: beta, eps: eps, rows: rows, d: d})
	return nil
}

// LayerNormBackward is LayerNorm's backward pass. Per row, with x̂ the
// normalised input and g = dout·γ:
//
//	dx = rstd·(g − mean(g) − x̂·mean(g·x̂))   dgamma += Σ dout·x̂   dbeta += Σ dout
//
// dx is overwritten (it may be dout itself); dgamma and dbeta accumulate,
// summed over rows in a fixed order. Any gradient may be nil.
//
//	dx: (…,D)  dgamma, dbeta: (D)  dout, x: (…,D)  mean, rstd: one per row  gamma: (D) or nil
func LayerNormBackward(dx, dgamma, dbeta, dout, x, mean, rstd, gamma *Tensor) error {
	const op = "LayerNormBackward"
	if dout == nil || mean == nil || rstd == nil {
		return shapeErr(op, "dout, mean and rstd are required", "dout", dout, "mean", mean, "rstd", rstd)
	}
	if x == nil {
		return shapeErr(op, "x is required", "x", x)
	}
	_, dt, err := agreeDev(op, dx, dgamma, dbeta, dout, x, mean, rstd, gamma)
	if err != nil {
		return err
	}
	rows, d, ok := layerNormDims(x, [2]*Tensor{dx, dout}, [2]*Tensor{mean, rstd}, [3]*Tensor{gamma, dgamma, dbeta})
	if !ok {
		return shapeErr(op, "want dx, dout and x (…,D), mean and rstd one per row, gamma and its gradients (D)",
			"dx", dx, "dgamma", dgamma, "dbeta", dbeta, "dout", dout, "x", x, "mean", mean, "rstd", rstd, "gamma", gamma)
	}
	if x.device == CUDA {
		return layerNormBackwardCUDA(dx, dgamma, dbeta, dout, x, mean, rstd, gamma, rows, d)
	}
	pick(dt, runLayerNorm[float32], runLayerNorm[float64])(layerNormArgs{backward: true, out: dx, x: x, dout: dout,
		mean: mean, rstd: rstd, gamma: gamma, dgamma: dgamma, dbeta: dbeta, rows: rows, d: d})
	return nil
}

// layerNormDims checks x (…,D) against the tensors shaped like it (full), the
// per-row ones and the per-feature ones (D); nil entries are skipped.
func layerNormDims(x *Tensor, full [2]*Tensor, perRow [2]*Tensor, perD [3]*Tensor) (rows, d int, ok bool) {
	if x.Rank() < 1 || x.shape[x.Rank()-1] == 0 {
		return 0, 0, false
	}
	d = x.shape[x.Rank()-1]
	rows = numel(x.shape[:x.Rank()-1])
	ok = true
	for _, f := range full {
		ok = ok && (f == nil || sameShape(f.shape, x.shape))
	}
	for _, r := range perRow {
		ok = ok && (r == nil || r.Len() == rows)
	}
	for _, p := range perD {
		ok = ok && (p == nil || (p.Rank() == 1 && p.shape[0] == d))
	}
	return rows, d, ok
}

type layerNormTask[T Float] struct {
	backward                 bool
	out, x, dout, mean, rstd []T // out is dx in the backward pass
	gamma, beta              []T
	dgamma, dbeta            []T
	partial                  []float64 // per part: dgamma partial (D), then dbeta partial (D)
	eps                      float64
	rows, d                  int
}

var layerNormTasks = [2]taskPool{
	{New: func() any { return new(layerNormTask[float32]) }},
	{New: func() any { return new(layerNormTask[float64]) }},
}

// layerNormArgs are one layer norm call: its tensors (nil where unused) and
// sizes, bound to a layerNormTask of their dtype by runLayerNorm.
type layerNormArgs struct {
	backward                 bool
	out, x, dout, mean, rstd *Tensor // out is dx in the backward pass
	gamma, beta              *Tensor
	dgamma, dbeta            *Tensor
	eps                      float64
	rows, d                  int
}

// runLayerNorm splits the rows over the workers. The backward pass sums each
// part's dgamma and dbeta apart, then adds the parts in order.
func runLayerNorm[T Float](a layerNormArgs) {
	args := &layerNormTask[T]{backward: a.backward, out: dataAs[T](a.out), x: dataAs[T](a.x), dout: dataAs[T](a.dout),
		mean: dataAs[T](a.mean), rstd: dataAs[T](a.rstd), gamma: dataAs[T](a.gamma), beta: dataAs[T](a.beta),
		dgamma: dataAs[T](a.dgamma), dbeta: dataAs[T](a.dbeta), eps: a.eps, rows: a.rows, d: a.d}
	p := 1
	if args.rows*args.d >= parallelMinElems {
		p = parts(args.rows)
	}
	needPartial := args.backward && (args.dgamma != nil || args.dbeta != nil)
	if needPartial {
		args.partial = takeScratch[float64](2 * p * args.d)
	}
	if p == 1 {
		args.run(0, 0, args.rows)
	} else {
		pl := &layerNormTasks[dtypeIndex[T]()]
		t := pl.Get().(*layerNormTask[T])
		*t = *args
		parallelFor(args.rows, t)
		*t = layerNormTask[T]{}
		pl.Put(t)
	}
	if needPartial {
		d := args.d
		for part := 0; part < p; part++ {
			addPartial(args.dgamma, args.partial[2*part*d:(2*part+1)*d])
			addPartial(args.dbeta, args.partial[(2*part+1)*d:(2*part+2)*d])
		}
		giveScratch(args.partial)
	}
}

// addPartial adds a float64 partial sum into dst (skipped when dst is nil).
func addPartial[T Float](dst []T, partial []float64) {
	if dst == nil {
		return
	}
	for i, v := range partial {
		dst[i] += T(v)
	}
}

func (t *layerNormTask[T]) run(part, lo, hi int) {
	d := t.d
	var dg, db []float64
	if t.partial != nil {
		dg = t.partial[2*part*d : (2*part+1)*d]
		db = t.partial[(2*part+1)*d : (2*part+2)*d]
	}
	if layerNormRowsC(t, dg, db, lo, hi) {
		return
	}
	for r := lo; r < hi; r++ {
		x := t.x[r*d : r*d+d]
		if t.backward {
			var dx []T
			if t.out != nil {
				dx = t.out[r*d : r*d+d]
			}
			layerNormRowBackward(dx, dg, db, t.dout[r*d:r*d+d], x, float64(t.mean[r]), float64(t.rstd[r]), t.gamma)
			continue
		}
		mean, rstd := layerNormRow(t.out[r*d:r*d+d], x, t.gamma, t.beta, t.eps)
		if t.mean != nil {
			t.mean[r] = T(mean)
		}
		if t.rstd != nil {
			t.rstd[r] = T(rstd)
		}
	}
}

// layerNormRow writes out = (x − mean)·rstd·γ + β for one row and returns its
// mean and rstd; gamma and beta may be nil.
func layerNormRow[T Float](out, x, gamma, beta []T, eps float64) (mean, rstd float64) {
	out = out[:len(x)]
	sum := 0.0
	for _, v := range x {
		sum += float64(v)
	}
	mean = sum / float64(len(x))
	ss := 0.0
	for _, v := range x {
		d := float64(v) - mean
		ss += d * d
	}
	rstd = 1 / math.Sqrt(ss/float64(len(x))+eps)
	for j, v := range x {
		y := (float64(v) - mean) * rstd
		if gamma != nil {
			y *= float64(gamma[j])
		}
		if beta != nil {
			y += float64(beta[j])
		}
		out[j] = T(y)
	}
	return mean, rstd
}

// layerNormRowBackward writes dx (if not nil) for one row and adds Σ dout·x̂
// and Σ dout into the float64 partials dg and db (each may be nil). dx may be
// dout.
func layerNormRowBackward[T Float](dx []T, dg, db []float64, dout, x []T, mean, rstd float64, gamma []T) {
	x = x[:len(dout)]
	sumG, sumGX := 0.0, 0.0
	for j, d := range dout {
		xh := (float64(x[j]) - mean) * rstd
		g := float64(d)
		if dg != nil {
			dg[j] += g * xh
		}
		if db != nil {
			db[j] += g
		}
		if gamma != nil {
			g *= float64(gamma[j])
		}
		sumG += g
		sumGX += g * xh
	}
	if dx == nil {
		return
	}
	dx = dx[:len(dout)]
	n := float64(len(dout))
	a, b := sumG/n, sumGX/n
	for j, d := range dout {
		xh := (float64(x[j]) - mean) * rstd
		g := float64(d)
		if gamma != nil {
			g *= float64(gamma[j])
		}
		dx[j] = T(rstd * (g - a - xh*b))
	}
}
