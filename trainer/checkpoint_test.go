package trainer

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
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

// A checkpoint changed after it was written, in any tensor's bytes or in its
// run state, is refused as damaged instead of resumed from; the file as
// written loads.
func TestCheckpointDamageIsRefused(t *testing.T) {
	s := layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Seed: 4}
	fresh := func() (*layers.Model, *Classifier) {
		net, err := layers.Build("lenet", s)
		if err != nil {
			t.Fatal(err)
		}
		return net, NewClassifier(net, &SGD{Momentum: 0.9})
	}
	net, c := fresh()
	path := filepath.Join(t.TempDir(), "checkpoint.safetensors")
	if err := SaveCheckpoint(path, net, c.Opt, c.Params(), RunState{Epoch: 1, Step: 2}); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	body := 8 + int(binary.LittleEndian.Uint64(good))
	step := bytes.Index(good, []byte(`\"step\":2`))
	if step < 0 {
		t.Fatalf("no step in the header: %.300s", good[8:body])
	}
	for name, damage := range map[string]func(b []byte){
		"first value":  func(b []byte) { b[body] ^= 1 },
		"a middle one": func(b []byte) { b[(body+len(b))/2] ^= 0x40 },
		"last value":   func(b []byte) { b[len(b)-1] ^= 0x80 },
		"run state":    func(b []byte) { b[step+len(`\"step\":`)] = '3' },
	} {
		b := bytes.Clone(good)
		damage(b)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		net, c := fresh()
		if _, err := LoadCheckpoint(path, net, c.Opt, c.Params()); err == nil || !strings.Contains(err.Error(), "is damaged") {
			t.Errorf("%s changed: %v, want the checkpoint refused as damaged", name, err)
		}
	}
	if err := os.WriteFile(path, good, 0o644); err != nil {
		t.Fatal(err)
	}
	net, c = fresh()
	if _, err := LoadCheckpoint(path, net, c.Opt, c.Params()); err != nil {
		t.Fatalf("the undamaged checkpoint: %v", err)
	}
}
