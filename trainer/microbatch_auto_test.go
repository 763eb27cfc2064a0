package trainer

import (
	"math"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

// micro_batch 0's rule: gMLP is split where a batch's largest layer output
// (its GELU's, tokens × 256 floats a sample) passes 4 MiB, into the largest
// power of two of samples whose output stays within 2 MiB, 8 at least;
// models without layer norms, with batch norm, or not built as a Model stay
// whole, and so does every batch on the GPU.
func TestAutoMicroBatchRule(t *testing.T) {
	gmlp := func(h, w, c int) layers.Spec {
		return layers.Spec{Channels: c, Height: h, Width: w, Classes: 10}
	}
	for _, tc := range []struct {
		model       string
		spec        layers.Spec
		sampleBytes int64
		sizes       map[int]int // rows → micro-batch
	}{
		{"gmlp", gmlp(32, 32, 3), 64 * 256 * 4, map[int]int{64: 0, 65: 32, 128: 32, 256: 32, 32: 0}},
		{"gmlp", gmlp(28, 28, 1), 49 * 256 * 4, map[int]int{64: 0, 128: 32, 1024: 32}},
		{"gmlp", gmlp(64, 64, 3), 256 * 256 * 4, map[int]int{16: 0, 17: 8, 64: 8}},
		{"mlp", gmlp(32, 32, 3), 0, map[int]int{4096: 0}},
		{"lenet", gmlp(32, 32, 3), 0, map[int]int{4096: 0}},
		{"cnn", gmlp(32, 32, 3), 0, map[int]int{4096: 0}},
	} {
		net := buildMicro(t, tc.model, tc.spec)
		r, err := AutoMicroBatch(net)
		if err != nil {
			t.Fatal(err)
		}
		in := tc.spec.Height
		if r.SampleBytes != tc.sampleBytes {
			t.Errorf("%s %dx%d: a sample's largest output %d bytes, want %d", tc.model, in, in, r.SampleBytes, tc.sampleBytes)
		}
		for rows, want := range tc.sizes {
			if got := r.Size(rows, engine.CPU); got != want {
				t.Errorf("%s %dx%d batch %d: micro-batch %d, want %d", tc.model, in, in, rows, got, want)
			}
			if got := r.Size(rows, engine.CUDA); got != 0 {
				t.Errorf("%s batch %d on the GPU: micro-batch %d", tc.model, rows, got)
			}
		}
	}
	// A trainer follows the rule at micro_batch 0 only.
	c := DefaultConfig()
	for micro, want := range map[int]int{0: 32, -1: 0, 16: 16} {
		c.MicroBatch = micro
		tr, err := NewTrainer(c, buildMicro(t, "gmlp", gmlp(32, 32, 3)))
		if err != nil {
			t.Fatal(err)
		}
		if got := tr.microBatchFor(128); got != want || tr.classifier.MicroBatchFor(128, engine.CPU) != want {
			t.Errorf("trainer with micro_batch %d, batch 128: micro-batch %d, want %d", micro, got, want)
		}
	}
	// A network that is not a Model (no input shape to measure) stays whole.
	seq := (&layers.Sequential{}).Append("norm", layers.NewLayerNorm(8))
	if r, err := AutoMicroBatch(seq); err != nil || r != (MicroBatchRule{}) {
		t.Errorf("a bare Sequential: %+v, %v", r, err)
	}
}

// The automatic micro-batch is the same step as the one asked for: the
// weights after two steps are bit-identical to micro_batch 8's, and with
// micro_batch -1 the rule is not followed (the whole batch's bits).
func TestAutoMicroBatchIsTheExplicitOne(t *testing.T) {
	m := microModels[0]
	rule := MicroBatchRule{SampleBytes: 200_000} // 32 rows: 6.4 MB whole, pieces of 8 (1.6 MB)
	if n := rule.Size(32, engine.CPU); n != 8 {
		t.Fatalf("the test's rule splits 32 rows into %d", n)
	}
	weights := func(micro int, auto MicroBatchRule) [][]float32 {
		c := NewClassifier(buildMicro(t, m.name, m.spec), &SGD{Momentum: 0.9})
		c.MicroBatch, c.AutoMicro = micro, auto
		x, labels := syntheticBatch(32, m.spec)
		for i := 0; i < 2; i++ {
			if _, _, err := c.TrainStep(x, labels, 0.1); err != nil {
				t.Fatal(err)
			}
		}
		var w [][]float32
		for _, p := range c.Params() {
			w = append(w, append([]float32(nil), p.Value.Float32()...))
		}
		return w
	}
	same := func(a, b [][]float32) bool {
		for i := range a {
			for j := range a[i] {
				if math.Float32bits(a[i][j]) != math.Float32bits(b[i][j]) {
					return false
				}
			}
		}
		return true
	}
	auto, eight, whole := weights(0, rule), weights(8, MicroBatchRule{}), weights(0, MicroBatchRule{})
	if !same(auto, eight) {
		t.Error("micro_batch 0 with a rule choosing 8: weights differ from micro_batch 8's")
	}
	if same(auto, whole) {
		t.Error("the rule's pieces left the same bits as the whole batch: the test cannot tell them apart")
	}
	if !same(weights(-1, rule), whole) {
		t.Error("micro_batch -1: weights differ from the whole batch's")
	}
}
