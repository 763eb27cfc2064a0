package engine

import (
	"fmt"
	"math"
)

// Losses with PyTorch's semantics and mean reduction: softmax cross-entropy
// with label smoothing, mean squared error and mean absolute error. Each
// forward returns the loss as a float64 (accumulated in float64 whatever the
// dtype); each backward takes scale, the gradient arriving at that loss
// (1 for a plain step, a loss-scaling or accumulation factor otherwise), and
// overwrites the prediction gradient with scale·∂loss/∂prediction.

// SoftmaxCrossEntropyForward computes the softmax of each row of logits into
// probs and returns the mean over the batch of the label-smoothed
// cross-entropy, as torch.nn.CrossEntropyLoss(label_smoothing=smoothing):
//
//	loss_n = −(1−ε)·log p[n,y_n] − (ε/K)·Σ_k log p[n,k]
//
// correct counts the rows whose arg-max logit (first on ties) is the label,
// for accuracy. probs may be nil when no backward pass follows; otherwise it
// is what SoftmaxCrossEntropyBackward reads. Labels outside [0,K) are an error.
//
//	probs: (N,K)  logits: (N,K)  labels: N class indices
func SoftmaxCrossEntropyForward(probs, logits *Tensor, labels []int32, smoothing float64) (loss float64, correct int, err error) {
	const op = "SoftmaxCrossEntropyForward"
	if logits == nil {
		return 0, 0, shapeErr(op, "logits are required", "logits", logits)
	}
	dev, dt, err := agreeDev(op, probs, logits)
	if err != nil {
		return 0, 0, err
	}
	if err := checkCrossEntropy(op, probs, logits, labels, smoothing); err != nil {
		return 0, 0, err
	}
	if dev == CUDA {
		return softmaxCrossEntropyForwardCUDA(probs, logits, labels, smoothing)
	}
	n, k := logits.shape[0], logits.shape[1]
	loss, correct = pick(dt, softmaxCrossEntropyForward[float32], softmaxCrossEntropyForward[float64])(
		probs, logits, labels, smoothing, n, k)
	return loss, correct, nil
}

// SoftmaxCrossEntropyBackward computes dlogits = scale·(probs − q)/N, where q
// is the smoothed target (1−ε on the label plus ε/K everywhere): the gradient
// of scale times the forward's mean loss. dlogits is overwritten and may be
// probs itself.
//
//	dlogits: (N,K)  probs: (N,K) from the forward pass  labels: N class indices
func SoftmaxCrossEntropyBackward(dlogits, probs *Tensor, labels []int32, smoothing, scale float64) error {
	const op = "SoftmaxCrossEntropyBackward"
	if dlogits == nil || probs == nil {
		return shapeErr(op, "dlogits and probs are required", "dlogits", dlogits, "probs", probs)
	}
	dev, dt, err := agreeDev(op, dlogits, probs)
	if err != nil {
		return err
	}
	if err := checkCrossEntropy(op, dlogits, probs, labels, smoothing); err != nil {
		return err
	}
	if dev == CUDA {
		return softmaxCrossEntropyBackwardCUDA(dlogits, probs, labels, smoothing, scale)
	}
	n, k := probs.shape[0], probs.shape[1]
	pick(dt, softmaxCrossEntropyBackward[float32], softmaxCrossEntropyBackward[float64])(
		dlogits, probs, labels, smoothing, scale, n, k)
	return nil
}

// SoftmaxCrossEntropy is SoftmaxCrossEntropyForward into probs, then
// SoftmaxCrossEntropyBackward into dlogits with the same labels and
// smoothing and this scale, in one call: on the GPU one launch, the same
// bits as the two. A training step that needs both takes this.
//
//	probs, dlogits: (N,K), written  logits: (N,K)  labels: N class indices
func SoftmaxCrossEntropy(probs, dlogits, logits *Tensor, labels []int32, smoothing, scale float64) (loss float64, correct int, err error) {
	const op = "SoftmaxCrossEntropy"
	if probs == nil || dlogits == nil || logits == nil {
		return 0, 0, shapeErr(op, "probs, dlogits and logits are required", "probs", probs, "dlogits", dlogits, "logits", logits)
	}
	dev, _, err := agreeDev(op, probs, dlogits, logits)
	if err != nil {
		return 0, 0, err
	}
	if err := checkCrossEntropy(op, probs, logits, labels, smoothing); err != nil {
		return 0, 0, err
	}
	if err := checkCrossEntropy(op, dlogits, logits, labels, smoothing); err != nil {
		return 0, 0, err
	}
	if dev == CUDA {
		return softmaxCrossEntropyCUDA(probs, dlogits, logits, labels, smoothing, scale)
	}
	if loss, correct, err = SoftmaxCrossEntropyForward(probs, logits, labels, smoothing); err != nil {
		return loss, correct, err
	}
	return loss, correct, SoftmaxCrossEntropyBackward(dlogits, probs, labels, smoothing, scale)
}

// checkCrossEntropy checks a (N,K) pair, the labels and ε; out may be nil.
func checkCrossEntropy(op string, out, x *Tensor, labels []int32, smoothing float64) error {
	if x.Rank() != 2 || x.shape[0] == 0 || x.shape[1] == 0 || (out != nil && !sameShape(out.shape, x.shape)) {
		return shapeErr(op, "want non-empty (N,K) tensors of the same shape", "out", out, "x", x)
	}
	if len(labels) != x.shape[0] {
		return shapeErr(op, fmt.Sprintf("%d labels for %d rows", len(labels), x.shape[0]), "x", x)
	}
	if !(smoothing >= 0 && smoothing <= 1) {
		return &ShapeError{Op: op, Msg: fmt.Sprintf("label smoothing %v outside [0,1]", smoothing)}
	}
	k := int32(x.shape[1])
	for i, y := range labels {
		if y < 0 || y >= k {
			return shapeErr(op, fmt.Sprintf("label %d of row %d outside [0,%d)", y, i, k), "x", x)
		}
	}
	return nil
}

func softmaxCrossEntropyForward[T Float](probsT, logitsT *Tensor, labels []int32, eps float64, n, k int) (float64, int) {
	probs, logits := dataAs[T](probsT), dataAs[T](logitsT)
	total, correct := 0.0, 0
	for i := 0; i < n; i++ {
		row := logits[i*k : i*k+k]
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		y := int(labels[i])
		if best == y {
			correct++
		}
		m := float64(row[best])
		sum, sumX := 0.0, 0.0
		for _, v := range row {
			sum += math.Exp(float64(v) - m)
			sumX += float64(v)
		}
		// −log p_k = m + log Σe^(x−m) − x_k, so the smoothed loss needs only
		// the label's logit and the mean logit. Summed as differences from
		// m: m + log Σ lost the log to m's rounding past about 1e16 (tied
		// logits of 1e17 gave a loss of 0, or −6 smoothed, for ln 2).
		rowLoss := math.Log(sum) + (1-eps)*(m-float64(row[y]))
		if eps != 0 { // 0·∞ is NaN: a −Inf logit other than the label's costs nothing unsmoothed, as in PyTorch
			rowLoss += eps * (m - sumX/float64(k))
		}
		total += rowLoss
		if probs != nil {
			p := probs[i*k : i*k+k]
			inv := 1 / sum
			for j, v := range row {
				p[j] = T(math.Exp(float64(v)-m) * inv)
			}
		}
	}
	return total / float64(n), correct
}

func softmaxCrossEntropyBackward[T Float](dlogitsT, probsT *Tensor, labels []int32, eps, scale float64, n, k int) {
	dlogits, probs := dataAs[T](dlogitsT), dataAs[T](probsT)
	s := scale / float64(n)
	off := T(s * eps / float64(k)) // the uniform part of s·q
	on := T(s * (1 - eps))         // the label's extra part
	sT := T(s)
	for i := 0; i < n; i++ {
		p := probs[i*k : i*k+k]
		d := dlogits[i*k : i*k+k]
		for j, v := range p {
			d[j] = sT*v - off
		}
		d[labels[i]] -= on
	}
}

// MSEForward returns mean((pred − target)²) over every element, as
// torch.nn.MSELoss().
//
//	pred: any shape, e.g. (N,D)  target: same shape
func MSEForward(pred, target *Tensor) (float64, error) {
	dt, err := checkRegressionLoss("MSEForward", nil, pred, target)
	if err != nil {
		return 0, err
	}
	if pred.device == CUDA {
		return regressionLossCUDA(pred, target, false)
	}
	return pick(dt, regressionLoss[float32], regressionLoss[float64])(pred, target, false), nil
}

// MSEBackward computes dpred = scale·2(pred − target)/numel, overwriting
// dpred (which may be pred itself).
//
//	dpred, pred, target: the same shape
func MSEBackward(dpred, pred, target *Tensor, scale float64) error {
	dt, err := checkRegressionLoss("MSEBackward", dpred, pred, target)
	if err != nil {
		return err
	}
	if pred.device == CUDA {
		return regressionLossBackwardCUDA(dpred, pred, target, scale, false)
	}
	pick(dt, regressionLossBackward[float32], regressionLossBackward[float64])(dpred, pred, target, scale, false)
	return nil
}

// L1Forward returns mean(|pred − target|) over every element, as
// torch.nn.L1Loss().
//
//	pred: any shape, e.g. (N,D)  target: same shape
func L1Forward(pred, target *Tensor) (float64, error) {
	dt, err := checkRegressionLoss("L1Forward", nil, pred, target)
	if err != nil {
		return 0, err
	}
	if pred.device == CUDA {
		return regressionLossCUDA(pred, target, true)
	}
	return pick(dt, regressionLoss[float32], regressionLoss[float64])(pred, target, true), nil
}

// L1Backward computes dpred = scale·sign(pred − target)/numel with sign(0) = 0
// (PyTorch's subgradient), overwriting dpred (which may be pred itself).
//
//	dpred, pred, target: the same shape
func L1Backward(dpred, pred, target *Tensor, scale float64) error {
	dt, err := checkRegressionLoss("L1Backward", dpred, pred, target)
	if err != nil {
		return err
	}
	if pred.device == CUDA {
		return regressionLossBackwardCUDA(dpred, pred, target, scale, true)
	}
	pick(dt, regressionLossBackward[float32], regressionLossBackward[float64])(dpred, pred, target, scale, true)
	return nil
}

// checkRegressionLoss checks pred and target (and dpred unless it is a
// forward, where it is passed as nil).
func checkRegressionLoss(op string, dpred, pred, target *Tensor) (DType, error) {
	backward := op == "MSEBackward" || op == "L1Backward"
	if pred == nil || target == nil || (backward && dpred == nil) {
		return 0, shapeErr(op, "missing tensor", "dpred", dpred, "pred", pred, "target", target)
	}
	_, dt, err := agreeDev(op, dpred, pred, target)
	if err != nil {
		return 0, err
	}
	if !sameShape(pred.shape, target.shape) || pred.Len() == 0 ||
		(dpred != nil && !sameShape(dpred.shape, pred.shape)) {
		return 0, shapeErr(op, "want non-empty pred, target and dpred of one shape",
			"dpred", dpred, "pred", pred, "target", target)
	}
	return dt, nil
}

func regressionLoss[T Float](predT, targetT *Tensor, l1 bool) float64 {
	pred := dataAs[T](predT)
	target := dataAs[T](targetT)[:len(pred)]
	s := 0.0
	for i, p := range pred {
		d := float64(p) - float64(target[i])
		if l1 {
			s += math.Abs(d)
		} else {
			s += d * d
		}
	}
	return s / float64(len(pred))
}

func regressionLossBackward[T Float](dpredT, predT, targetT *Tensor, scale float64, l1 bool) {
	pred := dataAs[T](predT)
	dpred, target := dataAs[T](dpredT)[:len(pred)], dataAs[T](targetT)[:len(pred)]
	c := scale / float64(len(pred))
	if !l1 {
		c2 := T(2 * c)
		for i, p := range pred {
			dpred[i] = c2 * (p - target[i])
		}
		return
	}
	cT := T(c)
	for i, p := range pred {
		switch d := p - target[i]; {
		case d > 0:
			dpred[i] = cT
		case d < 0:
			dpred[i] = -cT
		default:
			dpred[i] = 0
		}
	}
}
