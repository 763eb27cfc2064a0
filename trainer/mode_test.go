package trainer

import (
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

// Predict, Outputs and Evaluate run in evaluation mode and then leave the
// model in the mode its caller had set: a model put in eval stays in eval
// (its dropout off), as after Keras's predict or PyTorch's no_grad block.
func TestEvaluationKeepsTheCallersMode(t *testing.T) {
	mn := smallMNIST(t)
	val := firstSamples(t, mn.Val, 8)
	model, err := layers.Build("lenet", layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	drop := layers.NewDropout(0.5, 1)
	model.Append("drop", drop)
	tr, err := NewTrainer(DefaultConfig(), model)
	if err != nil {
		t.Fatal(err)
	}
	x, err := engine.FromDense(val.ImagesDense())
	if err != nil {
		t.Fatal(err)
	}
	passes := map[string]func() error{
		"Predict":  func() error { _, err := tr.Predict(val.ImagesDense()); return err },
		"Outputs":  func() error { _, err := tr.Outputs(x); return err },
		"Evaluate": func() error { _, err := tr.Evaluate(val); return err },
		"FindLR": func() error {
			_, err := tr.FindLR(t.Context(), val, LRFindOptions{Start: 1e-4, End: 1e-2, Steps: 10})
			return err
		},
	}
	for name, pass := range passes {
		for _, training := range []bool{false, true} {
			model.SetTraining(training)
			if err := pass(); err != nil {
				t.Fatal(name, err)
			}
			if got := layers.Training(model); got != training {
				t.Errorf("%s: the model trains = %v after it, %v before", name, got, training)
			}
			if got := layers.Training(drop); got != training {
				t.Errorf("%s: its dropout trains = %v after it, %v before", name, got, training)
			}
		}
	}
}
