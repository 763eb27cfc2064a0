package layers

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/engine/safetensors"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

func goldenPath(name string) string { return filepath.Join("..", "testdata", "golden", name) }

func lenet28(t *testing.T) *Model {
	m, err := Build("lenet", Spec{Channels: 1, Height: 28, Width: 28, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Kiln's LeNet with PyTorch's weights computes PyTorch's logits, loss and
// every parameter gradient (float64, scripts/make_golden.py).
func TestParityLeNetWithPyTorch(t *testing.T) {
	g, _, err := safetensors.ReadFile(goldenPath("lenet.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	m := lenet28(t)
	Convert(m, engine.Float64)
	state := map[string]*engine.Tensor{}
	for name := range State(m) {
		state[name] = g[name]
	}
	if err := LoadState(m, state); err != nil {
		t.Fatal(err)
	}
	logits, err := m.Forward(g["input"])
	if err != nil {
		t.Fatal(err)
	}
	if msg := gradcheck.Close(logits.Values(), g["logits"].Values(), 1e-12, 1e-10); msg != "" {
		t.Fatalf("logits: %s", msg)
	}
	labels := make([]int32, g["labels"].Len())
	for i := range labels {
		labels[i] = int32(g["labels"].At(i))
	}
	probs := engine.New(engine.Float64, logits.Shape()...)
	loss, _, err := engine.SoftmaxCrossEntropyForward(probs, logits, labels, 0)
	if err != nil {
		t.Fatal(err)
	}
	if msg := gradcheck.Close([]float64{loss}, g["loss"].Values(), 1e-12, 1e-10); msg != "" {
		t.Fatalf("loss: %s", msg)
	}
	if err := engine.SoftmaxCrossEntropyBackward(probs, probs, labels, 0, 1); err != nil {
		t.Fatal(err)
	}
	ZeroGrad(m)
	if _, err := m.Backward(probs); err != nil {
		t.Fatal(err)
	}
	names, params := Params(m)
	for i, p := range params {
		if msg := gradcheck.Close(p.Grad.Values(), g["grad."+names[i]].Values(), 1e-12, 1e-9); msg != "" {
			t.Errorf("grad.%s: %s", names[i], msg)
		}
	}
}

// A file PyTorch wrote loads; saving and loading again is lossless.
func TestLeNetWeightsRoundTrip(t *testing.T) {
	m := lenet28(t)
	if _, err := LoadWeights(m, goldenPath("lenet_torch_weights.safetensors")); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "w.safetensors")
	if err := SaveWeights(m, path, nil); err != nil {
		t.Fatal(err)
	}
	m2 := lenet28(t)
	if _, err := LoadWeights(m2, path); err != nil {
		t.Fatal(err)
	}
	a, b := State(m), State(m2)
	for name, v := range a {
		if msg := gradcheck.Close(b[name].Values(), v.Values(), 0, 0); msg != "" {
			t.Fatalf("%s: %s", name, msg)
		}
	}
	// A model of another shape refuses the file with a clear error.
	other, _ := Build("lenet", Spec{Channels: 3, Height: 32, Width: 32, Classes: 10})
	if _, err := LoadWeights(other, path); err == nil {
		t.Fatal("mismatched weights loaded")
	} else {
		t.Log(err)
	}
}

// With KILN_INTEROP_DIR set, writes a freshly initialised Kiln LeNet and its
// outputs on a fixed input for scripts/check_torch_interop.py, which loads the
// weights into PyTorch's LeNet with strict load_state_dict and compares.
func TestExportLeNetForTorch(t *testing.T) {
	dir := os.Getenv("KILN_INTEROP_DIR")
	if dir == "" {
		t.Skip("KILN_INTEROP_DIR not set: this test only feeds scripts/check_torch_interop.py")
	}
	m, err := Build("lenet", Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	m.SetTraining(false)
	x := engine.New(engine.Float32, 3, 1, 28, 28)
	for i := range x.Float32() {
		x.Float32()[i] = float32(math.Sin(float64(i) * 0.37))
	}
	y, err := m.Forward(x)
	if err != nil {
		t.Fatal(err)
	}
	if err := SaveWeights(m, filepath.Join(dir, "lenet_kiln.safetensors"), nil); err != nil {
		t.Fatal(err)
	}
	io := map[string]*engine.Tensor{"input": x, "logits": y}
	if err := safetensors.WriteFile(filepath.Join(dir, "lenet_kiln_io.safetensors"), io, nil); err != nil {
		t.Fatal(err)
	}
}
