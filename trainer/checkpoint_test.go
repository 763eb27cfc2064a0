package trainer

import (
	"path/filepath"
	"testing"

	"github.com/kiln-ml/kiln/layers"
)

// Training, checkpointing, and continuing in a fresh process-like setup gives
// the same weights as training straight through.
func TestCheckpointResumeIsExact(t *testing.T) {
	s := layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Seed: 4}
	x, labels := syntheticBatch(8, s)
	fresh := func() (*layers.Model, *Classifier) {
		net, err := layers.Build("cnn", s) // has batch norm buffers and dropout
		if err != nil {
			t.Fatal(err)
		}
		return net, NewClassifier(net, &AdamW{WeightDecay: 0.01})
	}
	_, straight := fresh()
	for i := 0; i < 4; i++ {
		if _, _, err := straight.TrainStep(x, labels, 1e-3); err != nil {
			t.Fatal(err)
		}
	}
	net, first := fresh()
	for i := 0; i < 2; i++ {
		if _, _, err := first.TrainStep(x, labels, 1e-3); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "checkpoint.safetensors")
	if err := SaveCheckpoint(path, net, first.Opt, first.Params(), RunState{Epoch: 1, Step: 2}); err != nil {
		t.Fatal(err)
	}
	net2, second := fresh()
	st, err := LoadCheckpoint(path, net2, second.Opt, second.Params())
	if err != nil {
		t.Fatal(err)
	}
	if st.Step != 2 || st.Epoch != 1 {
		t.Fatalf("state %+v", st)
	}
	for i := 0; i < 2; i++ {
		if _, _, err := second.TrainStep(x, labels, 1e-3); err != nil {
			t.Fatal(err)
		}
	}
	a, b := layers.FullState(straight.Net), layers.FullState(net2)
	for name, v := range a {
		for i := 0; i < v.Len(); i++ {
			if v.At(i) != b[name].At(i) {
				t.Fatalf("%s[%d]: %v straight, %v resumed", name, i, v.At(i), b[name].At(i))
			}
		}
	}
	// A checkpoint for another optimiser is refused clearly.
	_, third := fresh()
	third.Opt = &SGD{Momentum: 0.9}
	if _, err := LoadCheckpoint(path, net2, third.Opt, third.Params()); err == nil {
		t.Fatal("optimiser mismatch accepted")
	}
}
