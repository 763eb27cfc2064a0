package engine_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

func randLabels(rng *rand.Rand, n, k int) []int32 {
	labels := make([]int32, n)
	for i := range labels {
		labels[i] = int32(rng.IntN(k))
	}
	return labels
}

// scalarLoss wraps a loss value in a one-element tensor for gradcheck.
func scalarLoss(out *engine.Tensor, loss float64, err error) (*engine.Tensor, error) {
	out.Float64()[0] = loss
	return out, err
}

func TestGradientSoftmaxCrossEntropy(t *testing.T) {
	for _, eps := range []float64{0, 0.1, 1} {
		for _, c := range []struct{ n, k int }{{1, 1}, {1, 3}, {5, 7}, {3, 10}} {
			rng := rand.New(rand.NewPCG(uint64(c.n), uint64(c.k)))
			logits := gradcheck.Rand(rng, -4, 4, c.n, c.k)
			labels := randLabels(rng, c.n, c.k)
			probs := engine.New(engine.Float64, c.n, c.k)
			dlogits := engine.New(engine.Float64, c.n, c.k)
			loss := engine.New(engine.Float64, 1)
			gradcheck.Check(t, []*engine.Tensor{logits},
				func() (*engine.Tensor, error) {
					l, _, err := engine.SoftmaxCrossEntropyForward(probs, logits, labels, eps)
					return scalarLoss(loss, l, err)
				},
				func(dy *engine.Tensor) ([]*engine.Tensor, error) {
					err := engine.SoftmaxCrossEntropyBackward(dlogits, probs, labels, eps, dy.Float64()[0])
					return []*engine.Tensor{dlogits}, err
				}, gradcheck.Options{Names: []string{"logits"}})
		}
	}
}

// Values and gradients from torch.nn.CrossEntropyLoss(label_smoothing=ε) in
// float64 (PyTorch 1.13), and the formula by hand.
func TestSoftmaxCrossEntropyValues(t *testing.T) {
	logits, _ := engine.FromFloat64([]float64{1, 2, 3, 1, 1, 1, 0.5, -2, 4}, 3, 3)
	labels := []int32{2, 0, 1}
	cases := []struct {
		eps  float64
		loss float64
		grad []float64
	}{
		{0, 2.5127906252652163, []float64{0.030010191056793478, 0.08157615701826587, -0.1115863480750594,
			-0.2222222222222222, 0.1111111111111111, 0.1111111111111111, 0.009747290682056566, -0.33253322699111, 0.3227859363090534}},
		{0.1, 2.4516795141541055, []float64{0.018899079945682365, 0.07046504590715476, -0.0893641258528372,
			-0.2, 0.1, 0.1, -0.0013638204290545442, -0.3103110047688878, 0.3116748251979424}},
	}
	probs := engine.New(engine.Float64, 3, 3)
	for _, c := range cases {
		loss, correct, err := engine.SoftmaxCrossEntropyForward(probs, logits, labels, c.eps)
		opsMust(t, err)
		// By hand: row 1 is uniform, so its loss is log 3 whatever ε is.
		lse0 := math.Log(math.Exp(1) + math.Exp(2) + math.Exp(3))
		lse2 := math.Log(math.Exp(0.5) + math.Exp(-2) + math.Exp(4))
		hand := ((1-c.eps)*(lse0-3) + c.eps*(lse0-2) + math.Log(3) + (1-c.eps)*(lse2+2) + c.eps*(lse2-2.5/3)) / 3
		if math.Abs(loss-c.loss) > 1e-14 || math.Abs(hand-c.loss) > 1e-14 {
			t.Errorf("ε=%v: loss %.17g, hand %.17g, PyTorch %.17g", c.eps, loss, hand, c.loss)
		}
		// Row 0's arg-max is its label 2; row 1 ties (first index, 0, wins);
		// row 2's arg-max 2 is not its label 1.
		if correct != 2 {
			t.Errorf("correct = %d, want 2", correct)
		}
		dlogits := engine.New(engine.Float64, 3, 3)
		opsMust(t, engine.SoftmaxCrossEntropyBackward(dlogits, probs, labels, c.eps, 1))
		want, _ := engine.FromFloat64(c.grad, 3, 3)
		opsClose(t, "dlogits", dlogits, want, 1e-15, 1e-14)
		// In place over probs, with a scale.
		opsMust(t, engine.SoftmaxCrossEntropyBackward(probs, probs, labels, c.eps, 2))
		engine.Scale(want, 2)
		opsClose(t, "in-place dlogits", probs, want, 1e-15, 1e-14)
	}
	// Forward without probs, and with huge logits (stable).
	big, _ := engine.FromFloat64([]float64{1000, 0, -1000}, 1, 3)
	loss, _, err := engine.SoftmaxCrossEntropyForward(nil, big, []int32{1}, 0)
	if err != nil || math.Abs(loss-1000) > 1e-9 {
		t.Errorf("large logits: loss %v, %v; want 1000", loss, err)
	}
	// A −Inf logit other than the label's costs nothing unsmoothed, as in
	// PyTorch (0·∞ made it NaN).
	negInf, _ := engine.FromFloat64([]float64{1, math.Inf(-1), 1}, 1, 3)
	if loss, _, err := engine.SoftmaxCrossEntropyForward(nil, negInf, []int32{0}, 0); err != nil || math.Abs(loss-math.Ln2) > 1e-12 {
		t.Errorf("logits [1 -Inf 1], label 0: loss %v, %v; want ln 2", loss, err)
	}
	// Tied logits past 1e16: ln 2, smoothed or not, in both precisions
	// (m + log Σ lost the log to m's rounding: 0, or −6 smoothed).
	for _, v := range []float32{1e16, 1e17, 1e30, -1e30} {
		for _, eps := range []float64{0, 0.1} {
			tied, _ := engine.FromFloat32([]float32{v, v}, 1, 2)
			for _, x := range []*engine.Tensor{tied, tied.As(engine.Float64)} {
				loss, _, err := engine.SoftmaxCrossEntropyForward(nil, x, []int32{0}, eps)
				if err != nil || math.Abs(loss-math.Ln2) > 1e-12 {
					t.Errorf("logits [%g %g] (%v), ε=%v: loss %v, %v; want ln 2", v, v, x.DType(), eps, loss, err)
				}
			}
		}
	}
}

func TestSoftmaxCrossEntropyFloat32Agrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	const n, k = 37, 11
	logits := gradcheck.Rand(rng, -6, 6, n, k)
	labels := randLabels(rng, n, k)
	probs, d := engine.New(engine.Float64, n, k), engine.New(engine.Float64, n, k)
	l64, c64, err := engine.SoftmaxCrossEntropyForward(probs, logits, labels, 0.1)
	opsMust(t, err)
	opsMust(t, engine.SoftmaxCrossEntropyBackward(d, probs, labels, 0.1, 1))
	l32s := logits.As(engine.Float32)
	probs32, d32 := engine.New(engine.Float32, n, k), engine.New(engine.Float32, n, k)
	l32, c32, err := engine.SoftmaxCrossEntropyForward(probs32, l32s, labels, 0.1)
	opsMust(t, err)
	opsMust(t, engine.SoftmaxCrossEntropyBackward(d32, probs32, labels, 0.1, 1))
	if math.Abs(l32-l64) > 1e-6*l64 || c32 != c64 {
		t.Errorf("float32 loss %v (%d correct), float64 %v (%d)", l32, c32, l64, c64)
	}
	opsClose(t, "probs", probs32, probs, 1e-7, 1e-6)
	opsClose(t, "dlogits", d32, d, 1e-8, 1e-5)
}

func TestSoftmaxCrossEntropyErrors(t *testing.T) {
	const op, opB = "SoftmaxCrossEntropyForward", "SoftmaxCrossEntropyBackward"
	x := engine.New(engine.Float32, 2, 3)
	p := engine.New(engine.Float32, 2, 3)
	_, _, err := engine.SoftmaxCrossEntropyForward(p, x, []int32{0, 3}, 0)
	opsShapeError(t, err, op)
	t.Log(err)
	_, _, err = engine.SoftmaxCrossEntropyForward(p, x, []int32{-1, 0}, 0)
	opsShapeError(t, err, op)
	_, _, err = engine.SoftmaxCrossEntropyForward(p, x, []int32{0}, 0)
	opsShapeError(t, err, op)
	_, _, err = engine.SoftmaxCrossEntropyForward(p, x, []int32{0, 1}, 1.5)
	opsShapeError(t, err, op)
	_, _, err = engine.SoftmaxCrossEntropyForward(engine.New(engine.Float32, 3, 2), x, []int32{0, 1}, 0)
	opsShapeError(t, err, op)
	_, _, err = engine.SoftmaxCrossEntropyForward(nil, engine.New(engine.Float32, 6), []int32{0, 1}, 0)
	opsShapeError(t, err, op)
	_, _, err = engine.SoftmaxCrossEntropyForward(nil, nil, nil, 0)
	opsShapeError(t, err, op)
	opsShapeError(t, engine.SoftmaxCrossEntropyBackward(x, p, []int32{0, 7}, 0, 1), opB)
	opsShapeError(t, engine.SoftmaxCrossEntropyBackward(nil, p, []int32{0, 1}, 0, 1), opB)
	opsShapeError(t, engine.SoftmaxCrossEntropyBackward(x, engine.New(engine.Float64, 2, 3), []int32{0, 1}, 0, 1), opB)
}

func TestGradientMSE(t *testing.T) { gradientRegressionLoss(t, false) }
func TestGradientL1(t *testing.T)  { gradientRegressionLoss(t, true) }

func gradientRegressionLoss(t *testing.T, l1 bool) {
	forward, backward := engine.MSEForward, engine.MSEBackward
	if l1 {
		forward, backward = engine.L1Forward, engine.L1Backward
	}
	for _, shape := range [][]int{{1, 1}, {3, 5}, {7, 3}} {
		rng := rand.New(rand.NewPCG(7, uint64(shape[0])))
		pred := gradcheck.Rand(rng, -2, 2, shape...)
		target := gradcheck.Rand(rng, -2, 2, shape...)
		for i := range pred.Float64() { // keep |pred − target| off L1's kink
			if d := pred.Float64()[i] - target.Float64()[i]; math.Abs(d) < 1e-2 {
				pred.Float64()[i] += 0.05
			}
		}
		dpred := engine.New(engine.Float64, shape...)
		loss := engine.New(engine.Float64, 1)
		gradcheck.Check(t, []*engine.Tensor{pred},
			func() (*engine.Tensor, error) {
				l, err := forward(pred, target)
				return scalarLoss(loss, l, err)
			},
			func(dy *engine.Tensor) ([]*engine.Tensor, error) {
				return []*engine.Tensor{dpred}, backward(dpred, pred, target, dy.Float64()[0])
			}, gradcheck.Options{Names: []string{"pred"}})
	}
}

// Values and gradients from torch.nn.MSELoss() and L1Loss() in float64; the
// L1 gradient is 0 where pred equals target.
func TestRegressionLossValues(t *testing.T) {
	pred, _ := engine.FromFloat64([]float64{1, -2, 3, 0.5, 0.5, 7}, 2, 3)
	target, _ := engine.FromFloat64([]float64{0, -2, 1, 1.5, 0.25, 7}, 2, 3)
	cases := []struct {
		name     string
		forward  func(p, t *engine.Tensor) (float64, error)
		backward func(d, p, t *engine.Tensor, s float64) error
		loss     float64
		grad     []float64
	}{
		{"mse", engine.MSEForward, engine.MSEBackward, 1.0104166666666667,
			[]float64{0.3333333333333333, 0, 0.6666666666666666, -0.3333333333333333, 0.08333333333333333, 0}},
		{"l1", engine.L1Forward, engine.L1Backward, 0.7083333333333334,
			[]float64{0.16666666666666666, 0, 0.16666666666666666, -0.16666666666666666, 0.16666666666666666, 0}},
	}
	for _, c := range cases {
		for _, dt := range []engine.DType{engine.Float64, engine.Float32} {
			p, tg := pred.As(dt), target.As(dt)
			loss, err := c.forward(p, tg)
			opsMust(t, err)
			if math.Abs(loss-c.loss) > 1e-15 {
				t.Errorf("%s %v: loss %.17g, want %.17g", c.name, dt, loss, c.loss)
			}
			d := engine.New(dt, 2, 3)
			opsMust(t, c.backward(d, p, tg, 1))
			want, _ := engine.FromFloat64(c.grad, 2, 3)
			opsClose(t, c.name+" "+dt.String()+" grad", d, want, 1e-7, 1e-7)
		}
	}
}

func TestRegressionLossErrors(t *testing.T) {
	a, b := engine.New(engine.Float32, 2, 3), engine.New(engine.Float32, 3, 2)
	_, err := engine.MSEForward(a, b)
	opsShapeError(t, err, "MSEForward")
	_, err = engine.L1Forward(a, nil)
	opsShapeError(t, err, "L1Forward")
	_, err = engine.L1Forward(engine.New(engine.Float32, 0, 3), engine.New(engine.Float32, 0, 3))
	opsShapeError(t, err, "L1Forward")
	opsShapeError(t, engine.MSEBackward(nil, a, a, 1), "MSEBackward")
	opsShapeError(t, engine.L1Backward(b, a, a, 1), "L1Backward")
	opsShapeError(t, engine.L1Backward(a, a, engine.New(engine.Float64, 2, 3), 1), "L1Backward")
}

func TestLossNoAllocs(t *testing.T) {
	const n, k = 64, 10
	logits := engine.New(engine.Float32, n, k)
	logits.Fill(0.5)
	probs, d := engine.New(engine.Float32, n, k), engine.New(engine.Float32, n, k)
	labels := make([]int32, n)
	opsNoAllocs(t, "softmax cross-entropy", func() {
		_, _, _ = engine.SoftmaxCrossEntropyForward(probs, logits, labels, 0.1)
		_ = engine.SoftmaxCrossEntropyBackward(d, probs, labels, 0.1, 1)
	})
	opsNoAllocs(t, "mse and l1", func() {
		_, _ = engine.MSEForward(logits, probs)
		_ = engine.MSEBackward(d, logits, probs, 1)
		_, _ = engine.L1Forward(logits, probs)
		_ = engine.L1Backward(d, logits, probs, 1)
	})
}
