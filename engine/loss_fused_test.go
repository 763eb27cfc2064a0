package engine_test

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// TestSoftmaxCrossEntropyIsForwardThenBackward: the one call gives the
// loss, count, probabilities and gradient of the two, bit for bit, in place
// (dlogits the logits) as well; a missing or mismatched tensor is a
// ShapeError that writes nothing.
func TestSoftmaxCrossEntropyIsForwardThenBackward(t *testing.T) {
	rng := rand.New(rand.NewPCG(27, 28))
	for _, dt := range []engine.DType{engine.Float32, engine.Float64} {
		for _, c := range []struct {
			n, k    int
			eps, sc float64
		}{{1, 3, 0, 1}, {7, 10, 0.1, 1}, {64, 10, 0, 0.5}, {3, 257, 0.2, 2}} {
			logits := randTensor(rng, dt, c.n, c.k)
			labels := make([]int32, c.n)
			for i := range labels {
				labels[i] = int32(rng.IntN(c.k))
			}
			probs, grad := engine.New(dt, c.n, c.k), engine.New(dt, c.n, c.k)
			loss, correct, err := engine.SoftmaxCrossEntropy(probs, grad, logits, labels, c.eps, c.sc)
			opsMust(t, err)
			wantProbs, wantGrad := engine.New(dt, c.n, c.k), engine.New(dt, c.n, c.k)
			wloss, wcorrect, err := engine.SoftmaxCrossEntropyForward(wantProbs, logits, labels, c.eps)
			opsMust(t, err)
			opsMust(t, engine.SoftmaxCrossEntropyBackward(wantGrad, wantProbs, labels, c.eps, c.sc))
			if loss != wloss || correct != wcorrect || !bitsEqual(probs, wantProbs) || !bitsEqual(grad, wantGrad) {
				t.Fatalf("%v N=%d K=%d: differs from forward then backward", dt, c.n, c.k)
			}
			inPlace := logits.Clone()
			_, _, err = engine.SoftmaxCrossEntropy(probs, inPlace, inPlace, labels, c.eps, c.sc)
			opsMust(t, err)
			if !bitsEqual(inPlace, wantGrad) {
				t.Fatalf("%v N=%d K=%d: the gradient written over the logits differs", dt, c.n, c.k)
			}
		}
	}
	x := engine.New(engine.Float32, 2, 3)
	x.SetAt(0, 1)
	labels := []int32{0, 2}
	for name, args := range map[string][3]*engine.Tensor{
		"no dlogits":    {engine.New(engine.Float32, 2, 3), nil, engine.New(engine.Float32, 2, 3)},
		"no probs":      {nil, x, engine.New(engine.Float32, 2, 3)},
		"dlogits shape": {engine.New(engine.Float32, 2, 3), engine.New(engine.Float32, 3, 2), engine.New(engine.Float32, 2, 3)},
		"probs shape":   {engine.New(engine.Float32, 2, 4), x, engine.New(engine.Float32, 2, 3)},
		"mixed dtypes":  {engine.New(engine.Float64, 2, 3), x, engine.New(engine.Float32, 2, 3)},
	} {
		_, _, err := engine.SoftmaxCrossEntropy(args[0], args[1], args[2], labels, 0, 1)
		opsShapeError(t, err, "SoftmaxCrossEntropy")
		if x.At(0) != 1 {
			t.Fatalf("%s: the call wrote before failing", name)
		}
	}
	_, _, err := engine.SoftmaxCrossEntropy(engine.New(engine.Float32, 2, 3), x, engine.New(engine.Float32, 2, 3), []int32{0, 3}, 0, 1)
	opsShapeError(t, err, "SoftmaxCrossEntropy")
}
