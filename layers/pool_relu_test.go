package layers

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// A ReLU followed by a MaxPool2D in a Sequential runs as one op on the CPU
// (the pool rectifies the pooled values, its backward masks): lenet, and cnn
// with its batch norms unlinked from their ReLUs, give the same logits and
// parameter gradients, bit for bit, as the same model with the pairs
// unlinked, over two steps, in training and in evaluation.
func TestReLUMaxPoolFusedGivesTheSameBits(t *testing.T) {
	for _, name := range []string{"lenet", "cnn"} {
		fused, plain := buildTwice(t, name, Spec{Channels: 3, Height: 28, Width: 28, Classes: 10, Seed: 9})
		pairs := 0
		WalkLayers(fused, func(_ string, l Layer) {
			if b, ok := l.(*BatchNorm2D); ok {
				b.relu = nil
			}
			if m, ok := l.(*MaxPool2D); ok && m.relu != nil {
				pairs++
			}
		})
		WalkLayers(plain, func(_ string, l Layer) {
			if b, ok := l.(*BatchNorm2D); ok {
				b.relu = nil
			}
			if m, ok := l.(*MaxPool2D); ok && m.relu != nil {
				m.relu.pool, m.relu = nil, nil
			}
		})
		if pairs != 2 {
			t.Fatalf("%s: %d ReLUs linked to the max pool after them, want 2", name, pairs)
		}
		rng := rand.New(rand.NewPCG(8, 9))
		sameBitsOverSteps(t, name+" (ReLU and max pool)", fused, plain, rng, []int{4, 3, 28, 28}, func(step int) {
			ran := 0
			WalkLayers(fused, func(_ string, l Layer) {
				if m, ok := l.(*MaxPool2D); ok && m.fused && m.relu.pooled {
					ran++
				}
			})
			if ran != pairs {
				t.Errorf("%s step %d: %d of %d linked pairs ran fused", name, step, ran, pairs)
			}
		})
	}
}

// sameBitsOverSteps runs the two models on the same random batches of
// inShape, two training steps and then one evaluation, and fails on any
// logit or gradient that differs between them; after each step it calls
// check (nil: none).
func sameBitsOverSteps(t *testing.T, what string, fused, plain *Model, rng *rand.Rand, inShape []int, check func(step int)) {
	t.Helper()
	for step := range 3 {
		training := step < 2
		fused.SetTraining(training)
		plain.SetTraining(training)
		x := gradcheck.Rand(rng, -1, 1, inShape...).As(engine.Float32)
		dout := gradcheck.Rand(rng, -1, 1, inShape[0], 10).As(engine.Float32)
		var got, want [][]float32
		if training {
			got, want = stepBits(t, fused, x, dout), stepBits(t, plain, x, dout)
		} else {
			got, want = [][]float32{forwardBits(t, fused, x)}, [][]float32{forwardBits(t, plain, x)}
		}
		if check != nil {
			check(step)
		}
		for i := range want {
			if !slices.Equal(got[i], want[i]) {
				t.Errorf("%s step %d: result %d differs between the fused and the separate ops", what, step, i)
			}
		}
	}
}

func forwardBits(t *testing.T, m *Model, x *engine.Tensor) []float32 {
	y, err := m.Forward(x)
	if err != nil {
		t.Fatal(err)
	}
	return slices.Clone(y.Float32())
}
