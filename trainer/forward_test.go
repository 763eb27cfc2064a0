package trainer

import (
	"math"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

// Outputs in batches gives what one forward pass over all of x gives, and
// names the sample whose output is not finite.
func TestOutputs(t *testing.T) {
	model, err := layers.Build("mlp", layers.Spec{Channels: 1, Height: 4, Width: 4, Classes: 3, Hidden: 8, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.Batch = 1 // batches of 256
	tr, err := NewTrainer(c, model)
	if err != nil {
		t.Fatal(err)
	}
	const n = 600 // three batches, the last short
	x := engine.New(engine.Float32, n, 1, 4, 4)
	for i := range x.Float32() {
		x.Float32()[i] = float32(math.Sin(float64(i)))
	}
	got, err := tr.Outputs(x)
	if err != nil {
		t.Fatal(err)
	}
	model.SetTraining(false)
	want, err := model.Forward(x)
	if err != nil {
		t.Fatal(err)
	}
	if !got.SameShape(n, 3) {
		t.Fatalf("shape %v, want (%d, 3)", got.Shape(), n)
	}
	for i, v := range want.Values() {
		if math.Abs(got.At(i)-v) > 1e-5 {
			t.Fatalf("output %d: %v in batches, %v in one pass", i, got.At(i), v)
		}
	}
	x.Float32()[300*16+5] = float32(math.NaN())
	if _, err := tr.Outputs(x); err == nil || !strings.Contains(err.Error(), "sample 300 ") {
		t.Errorf("a NaN input in sample 300: %v", err)
	}
	if _, err := tr.Outputs(engine.New(engine.Float32, 0, 1, 4, 4)); err == nil {
		t.Error("no samples: no error")
	}
}

func TestSoftmax(t *testing.T) {
	logits, err := engine.FromFloat64([]float64{1, 3, 2, 3, 1000, 0, 0, 0, 0, 0}, 2, 5)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Softmax(logits.As(engine.Float32))
	if err != nil {
		t.Fatal(err)
	}
	for r := 0; r < 2; r++ {
		sum := 0.0
		for _, v := range p.Float64()[5*r : 5*r+5] {
			sum += v
		}
		if math.Abs(sum-1) > 1e-12 {
			t.Errorf("row %d: %v sums to %v", r, p.Float64()[5*r:5*r+5], sum)
		}
	}
	if p.At(4) != 1 || p.At(5) != 0.2 || p.At(1) != p.At(3) {
		t.Errorf("probabilities %v", p.Float64())
	}
	if _, err := Softmax(engine.New(engine.Float32, 3)); err == nil {
		t.Error("a vector: no error")
	}
}
