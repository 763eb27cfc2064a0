package engine

import (
	"errors"
	"fmt"
	"math"
)

// Synchronised batch norm (PyTorch's nn.SyncBatchNorm) is BatchNorm2DForward
// and BatchNorm2DBackward cut where data-parallel ranks must agree: each rank
// sums its own shard, the caller adds the sums over ranks (one all-reduce per
// pass) and every rank finishes with the global figures. The functions here
// are the local halves; layers.BatchNorm2D does the reducing. Sums are kept
// in float64 whatever the dtype, as sums of values rather than means, because
// sums are what an all-reduce adds.
//
// The global variance comes from Σx² − M·mean², which loses digits when a
// channel's |mean| is many orders above its standard deviation (1e4 costs
// about 8 of float64's 16); batch norm inputs are far from that.
//
// CPU only so far.

// BatchNormSums writes the sums of x (N,C,…) that synchronised batch norm
// adds over ranks, for each channel ch: sums[ch] = M (its N·H·W values),
// sums[C+ch] = Σx, sums[2C+ch] = Σx². len(sums) is 3C. An empty shard (N = 0)
// writes zeros, so a rank without samples still joins the all-reduce.
func BatchNormSums(sums []float64, x *Tensor) error {
	const op = "BatchNormSums"
	dt, err := checkBatchNormSync(op, x, [2]*Tensor{}, [4]*Tensor{}, sums, 3)
	if err != nil {
		return err
	}
	pick(dt, runBatchNormSync[float32], runBatchNormSync[float64])(bnSyncArgs{mode: bnSyncSums,
		bn: batchNormArgs{x: x}, sums: sums})
	return nil
}

// BatchNormSyncStats turns the sums of BatchNormSums, added over all ranks,
// into each channel's mean and 1/√(var+ε) (var biased), saved for
// BatchNormNormalize and the backward pass, and moves the running statistics
// (both or neither may be nil) as BatchNorm2DForward does, with the global
// unbiased variance. Every channel needs more than one value over all ranks.
//
//	saveMean, saveInvStd, runMean, runVar: (C)  sums: 3C
func BatchNormSyncStats(saveMean, saveInvStd, runMean, runVar *Tensor, sums []float64, momentum, eps float64) error {
	const op = "BatchNormSyncStats"
	if saveMean == nil || saveInvStd == nil || (runMean == nil) != (runVar == nil) {
		return shapeErr(op, "saveMean and saveInvStd are required, the running statistics both or neither",
			"saveMean", saveMean, "saveInvStd", saveInvStd, "runMean", runMean, "runVar", runVar)
	}
	if _, _, err := agree(op, saveMean, saveInvStd, runMean, runVar); err != nil {
		return err
	}
	c := saveMean.Len()
	bad := len(sums) != 3*c
	for _, t := range [4]*Tensor{saveMean, saveInvStd, runMean, runVar} {
		bad = bad || (t != nil && (t.Rank() != 1 || t.Len() != c))
	}
	if bad {
		return shapeErr(op, fmt.Sprintf("want the statistics (C) and 3C sums, got %d sums", len(sums)),
			"saveMean", saveMean, "saveInvStd", saveInvStd, "runMean", runMean, "runVar", runVar)
	}
	if !(momentum >= 0 && momentum <= 1) || !(eps >= 0) {
		return &ShapeError{Op: op, Msg: fmt.Sprintf("momentum %v outside [0,1] or negative eps %v", momentum, eps)}
	}
	for ch := 0; ch < c; ch++ {
		m := sums[ch]
		if !(m >= 2) {
			return &ShapeError{Op: op, Msg: fmt.Sprintf(
				"training needs more than one value per channel, channel %d has %v over all ranks", ch, m)}
		}
		mean := sums[c+ch] / m
		ss := max(sums[2*c+ch]-m*mean*mean, 0) // Σ(x−mean)²
		if err := setSyncStats(ch, mean, ss, m, saveMean, saveInvStd, runMean, runVar, momentum, eps); err != nil {
			return err
		}
	}
	return nil
}

// setSyncStats stores channel ch's global statistics (mean, Σ(x−mean)² over
// m values): the saved mean and 1/σ, and the running statistics, updated
// with the unbiased variance as PyTorch does. The tensors are on the CPU
// (BatchNorm2D checks), so SetAt cannot fail there; an error reaches the
// caller all the same.
func setSyncStats(ch int, mean, ss, m float64, saveMean, saveInvStd, runMean, runVar *Tensor, momentum, eps float64) error {
	err := errors.Join(saveMean.SetAt(ch, mean), saveInvStd.SetAt(ch, 1/math.Sqrt(ss/m+eps)))
	if runMean != nil {
		err = errors.Join(err, runMean.SetAt(ch, (1-momentum)*runMean.At(ch)+momentum*mean),
			runVar.SetAt(ch, (1-momentum)*runVar.At(ch)+momentum*ss/(m-1)))
	}
	return err
}

// BatchNormNormalize writes out = γ·(x − mean)·invStd + β with each channel's
// saved statistics (BatchNormSyncStats); gamma and beta may be nil. out may be
// x itself.
//
//	out, x: (N,C,…)  mean, invStd: (C)  gamma, beta: (C) or nil
func BatchNormNormalize(out, x, mean, invStd, gamma, beta *Tensor) error {
	const op = "BatchNormNormalize"
	if out == nil || mean == nil || invStd == nil {
		return shapeErr(op, "out, mean and invStd are required", "out", out, "mean", mean, "invStd", invStd)
	}
	dt, err := checkBatchNormSync(op, x, [2]*Tensor{out}, [4]*Tensor{mean, invStd, gamma, beta}, nil, 0)
	if err != nil {
		return err
	}
	pick(dt, runBatchNormSync[float32], runBatchNormSync[float64])(bnSyncArgs{mode: bnSyncNormalize,
		bn: batchNormArgs{out: out, x: x, mean: mean, invStd: invStd, gamma: gamma, beta: beta}})
	return nil
}

// BatchNormBackwardSums writes this rank's sums of the backward pass, for
// each channel ch: sums[ch] = Σ dout and sums[C+ch] = Σ dout·x̂, with x̂ the
// normalised input. They are also this rank's dbeta and dgamma, which it adds
// into those (either may be nil), as BatchNorm2DBackward does. len(sums) is 2C.
//
//	dgamma, dbeta: (C) or nil  dout, x: (N,C,…)  mean, invStd: (C)
func BatchNormBackwardSums(sums []float64, dgamma, dbeta, dout, x, mean, invStd *Tensor) error {
	const op = "BatchNormBackwardSums"
	if dout == nil || mean == nil || invStd == nil {
		return shapeErr(op, "dout, mean and invStd are required", "dout", dout, "mean", mean, "invStd", invStd)
	}
	dt, err := checkBatchNormSync(op, x, [2]*Tensor{dout}, [4]*Tensor{mean, invStd, dgamma, dbeta}, sums, 2)
	if err != nil {
		return err
	}
	pick(dt, runBatchNormSync[float32], runBatchNormSync[float64])(bnSyncArgs{mode: bnSyncBackwardSums,
		bn: batchNormArgs{x: x, dout: dout, mean: mean, invStd: invStd, dgamma: dgamma, dbeta: dbeta}, sums: sums})
	return nil
}

// BatchNormSyncBackward writes dx for this rank's shard. reduced holds
// [S1 | S2], the all-reduce of s·BatchNormBackwardSums over the ranks, with s
// each rank's share M_r/M of the values; count is M, share this rank's s.
//
// Why: the loss of rank r is its shard's mean loss, so its dout is the
// gradient of the global mean loss L times 1/s, and the trainer later
// multiplies all of rank r's gradients by s and adds them over ranks. The
// global backward pass, with g = s·dout the gradient of L, is
//
//	∂L/∂x = γ/σ · (g − Σg/M − x̂·Σ(g·x̂)/M),  Σg = S1,  Σ(g·x̂) = S2
//
// and this rank returns it divided by s, in the same units as its dout:
//
//	dx = γ/σ · (dout − (S1/M + x̂·S2/M)/s)
//
// For the same reason dgamma and dbeta stay the rank's own unweighted sums.
// An empty shard (share 0) has no dx to write.
//
//	dx, dout, x: (N,C,…)  mean, invStd: (C)  gamma: (C) or nil  reduced: 2C
func BatchNormSyncBackward(dx, dout, x, mean, invStd, gamma *Tensor, reduced []float64, count, share float64) error {
	const op = "BatchNormSyncBackward"
	if dx == nil || dout == nil || mean == nil || invStd == nil {
		return shapeErr(op, "dx, dout, mean and invStd are required", "dx", dx, "dout", dout, "mean", mean, "invStd", invStd)
	}
	dt, err := checkBatchNormSync(op, x, [2]*Tensor{dx, dout}, [4]*Tensor{mean, invStd, gamma}, reduced, 2)
	if err != nil {
		return err
	}
	if x.Len() == 0 {
		return nil
	}
	if !(share > 0 && share <= 1) || !(count >= 2) {
		return &ShapeError{Op: op, Msg: fmt.Sprintf(
			"a shard with values needs a share in (0,1] and a count of at least 2, got %v and %v", share, count)}
	}
	pick(dt, runBatchNormSync[float32], runBatchNormSync[float64])(bnSyncArgs{mode: bnSyncBackwardDx,
		bn:   batchNormArgs{out: dx, x: x, dout: dout, mean: mean, invStd: invStd, gamma: gamma},
		sums: reduced, count: count, share: share})
	return nil
}

// checkBatchNormSync checks the tensors as checkBatchNorm does, keeps them on
// the CPU, and checks that sums holds perC values per channel (none when
// perC is 0).
func checkBatchNormSync(op string, x *Tensor, full [2]*Tensor, perC [4]*Tensor, sums []float64, perC64 int) (DType, error) {
	dt, err := checkBatchNorm(op, x, full, [6]*Tensor{perC[0], perC[1], perC[2], perC[3]})
	if err == errBatchNormShape {
		return 0, shapeErr(op, "want x and the tensors like it (N,C,…), the per-channel ones (C)", "x", x,
			"full0", full[0], "full1", full[1], "perC0", perC[0], "perC1", perC[1], "perC2", perC[2], "perC3", perC[3])
	}
	if err != nil {
		return 0, err
	}
	if x.device != CPU {
		return 0, fmt.Errorf("%s on %v: synchronised batch norm runs on the CPU so far: %w", op, x.device, ErrNoKernel)
	}
	if perC64 > 0 && len(sums) != perC64*x.shape[1] {
		return 0, &ShapeError{Op: op, Msg: fmt.Sprintf("want %d sums per channel for %d channels, got %d", perC64, x.shape[1], len(sums))}
	}
	return dt, nil
}

const (
	bnSyncSums = iota
	bnSyncNormalize
	bnSyncBackwardSums
	bnSyncBackwardDx
)

// bnSyncArgs are one call: the tensors (in batchNormArgs, sizes unset), the
// float64 sums the mode writes or reads, and the backward pass's M and s.
type bnSyncArgs struct {
	mode         int
	bn           batchNormArgs
	sums         []float64
	count, share float64
}

// bnSyncTask reuses batchNormTask's planes and float32 C kernels.
type bnSyncTask[T Float] struct {
	mode         int
	bn           batchNormTask[T]
	sums         []float64
	count, share float64
}

var bnSyncTasks = [2]taskPool{
	{New: func() any { return new(bnSyncTask[float32]) }},
	{New: func() any { return new(bnSyncTask[float64]) }},
}

// runBatchNormSync splits the channels over the workers; each channel writes
// only its own outputs and sums, so the result does not depend on the split.
func runBatchNormSync[T Float](a bnSyncArgs) {
	n, c, hw := batchNormDims(a.bn.x)
	b := a.bn
	args := &bnSyncTask[T]{mode: a.mode, sums: a.sums, count: a.count, share: a.share,
		bn: batchNormTask[T]{out: dataAs[T](b.out), x: dataAs[T](b.x), dout: dataAs[T](b.dout),
			gamma: dataAs[T](b.gamma), beta: dataAs[T](b.beta), dgamma: dataAs[T](b.dgamma),
			dbeta: dataAs[T](b.dbeta), mean: dataAs[T](b.mean), invStd: dataAs[T](b.invStd), n: n, c: c, hw: hw}}
	if n*c*hw < parallelMinElems {
		args.run(0, 0, c)
		return
	}
	p := &bnSyncTasks[dtypeIndex[T]()]
	t := p.Get().(*bnSyncTask[T])
	*t = *args
	parallelFor(c, t)
	*t = bnSyncTask[T]{}
	p.Put(t)
}

func (t *bnSyncTask[T]) run(_, lo, hi int) {
	for ch := lo; ch < hi; ch++ {
		switch t.mode {
		case bnSyncSums:
			t.localSums(ch)
		case bnSyncNormalize:
			mean, invStd := float64(t.bn.mean[ch]), float64(t.bn.invStd[ch])
			g, b := t.bn.affine(ch)
			t.bn.apply(ch, g*invStd, b-mean*g*invStd)
		case bnSyncBackwardSums:
			t.backwardSums(ch)
		default:
			t.backwardDx(ch)
		}
	}
}

// localSums finds the shard's mean and Σ(x−mean)² in two passes, as
// BatchNorm2DForward does, and turns them into Σx and Σx².
func (t *bnSyncTask[T]) localSums(ch int) {
	bn, c := &t.bn, t.bn.c
	m := float64(bn.n * bn.hw)
	mean, ss := 0.0, 0.0
	if m > 0 {
		var ok bool
		if mean, ss, ok = bnMomentsC(bn, ch); !ok {
			mean, ss = bnPlaneMoments(bn, ch, m)
		}
	}
	t.sums[ch], t.sums[c+ch], t.sums[2*c+ch] = m, m*mean, ss+m*mean*mean
}

// bnPlaneMoments is channel ch's mean and Σ(x−mean)² over its m values, in
// two passes in float64: the Go path where the C one does not apply.
func bnPlaneMoments[T Float](bn *batchNormTask[T], ch int, m float64) (mean, ss float64) {
	sum := 0.0
	for i := 0; i < bn.n; i++ {
		for _, v := range bn.plane(bn.x, i, ch) {
			sum += float64(v)
		}
	}
	mean = sum / m
	for i := 0; i < bn.n; i++ {
		for _, v := range bn.plane(bn.x, i, ch) {
			d := float64(v) - mean
			ss += d * d
		}
	}
	return mean, ss
}

func (t *bnSyncTask[T]) backwardSums(ch int) {
	bn := &t.bn
	mean, invStd := float64(bn.mean[ch]), float64(bn.invStd[ch])
	sumD, sumDX, ok := bnBackwardSumsC(bn, ch, mean)
	if !ok {
		sumD, sumDX = 0, 0
		for i := 0; i < bn.n; i++ {
			x, dout := bn.plane(bn.x, i, ch), bn.plane(bn.dout, i, ch)
			for j, d := range dout {
				sumD += float64(d)
				sumDX += float64(d) * (float64(x[j]) - mean)
			}
		}
	}
	sumDX *= invStd // Σ dout·x̂
	t.sums[ch], t.sums[bn.c+ch] = sumD, sumDX
	if bn.dbeta != nil {
		bn.dbeta[ch] += T(sumD)
	}
	if bn.dgamma != nil {
		bn.dgamma[ch] += T(sumDX)
	}
}

// backwardDx writes dx = k·(dout − (S1/M + x̂·S2/M)/s) = k·dout + a·x + b,
// with k = γ/σ and x̂ = (x − mean)/σ.
func (t *bnSyncTask[T]) backwardDx(ch int) {
	bn := &t.bn
	mean, invStd := float64(bn.mean[ch]), float64(bn.invStd[ch])
	g, _ := bn.affine(ch)
	k := g * invStd
	ms := t.count * t.share
	a := -k * invStd * t.sums[bn.c+ch] / ms
	b := -k*t.sums[ch]/ms - a*mean
	kT, aT, bT := T(k), T(a), T(b)
	if bnBackwardDxC(bn, ch, kT, aT, bT) {
		return
	}
	for i := 0; i < bn.n; i++ {
		x, dout, dx := bn.plane(bn.x, i, ch), bn.plane(bn.dout, i, ch), bn.plane(bn.out, i, ch)
		for j, d := range dout {
			dx[j] = kT*d + aT*x[j] + bT
		}
	}
}
