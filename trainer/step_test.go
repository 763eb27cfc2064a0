package trainer

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer/data"
)

func syntheticBatch(n int, s layers.Spec) (*engine.Tensor, []int32) {
	x := engine.New(engine.Float32, n, s.Channels, s.Height, s.Width)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range x.Float32() {
		x.Float32()[i] = float32(rng.NormFloat64())
	}
	labels := make([]int32, n)
	for i := range labels {
		labels[i] = int32(rng.IntN(s.Classes))
	}
	return x, labels
}

// A training step in steady state allocates nothing, for every model.
func TestTrainStepDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector; run without -race")
	}
	for _, name := range layers.ModelNames() {
		s := layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10}
		net, err := layers.Build(name, s)
		if err != nil {
			t.Fatal(err)
		}
		x, labels := syntheticBatch(8, s)
		c := NewClassifier(net, &SGD{Momentum: 0.9, WeightDecay: 1e-4})
		step := func() {
			if _, _, err := c.TrainStep(x, labels, 0.01); err != nil {
				t.Fatal(err)
			}
		}
		// Buffers, scratch and worker bookkeeping settle in the first steps.
		for i := 0; i < 5; i++ {
			step()
		}
		if a := testing.AllocsPerRun(5, step); a != 0 {
			t.Errorf("%s: %v allocations per training step", name, a)
		}
		// A GC between steps takes nothing the step needs (a sync.Pool
		// empties at every GC: CI once caught a step refilling one).
		afterGC := func() { runtime.GC(); step() }
		if a := testing.AllocsPerRun(5, afterGC); a != 0 {
			t.Errorf("%s: %v allocations per training step after a GC", name, a)
		}
	}
}

// Training on one fixed batch drives the loss down: the pieces fit together.
func TestTrainStepLearnsAFixedBatch(t *testing.T) {
	s := layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10}
	net, err := layers.Build("lenet", s)
	if err != nil {
		t.Fatal(err)
	}
	x, labels := syntheticBatch(16, s)
	c := NewClassifier(net, &SGD{Momentum: 0.9})
	first, _, err := c.TrainStep(x, labels, 0.05)
	if err != nil {
		t.Fatal(err)
	}
	var last float64
	var correct int
	for i := 0; i < 60; i++ {
		if last, correct, err = c.TrainStep(x, labels, 0.05); err != nil {
			t.Fatal(err)
		}
	}
	if !(last < first/10) || correct != 16 {
		t.Fatalf("loss %v → %v, %d/16 correct: not learning", first, last, correct)
	}
}

// The same seed gives bit-identical weights, run after run.
func TestTrainingIsDeterministic(t *testing.T) {
	run := func() []float64 {
		s := layers.Spec{Channels: 3, Height: 32, Width: 32, Classes: 10, Seed: 3}
		net, err := layers.Build("cbam", s)
		if err != nil {
			t.Fatal(err)
		}
		x, labels := syntheticBatch(4, s)
		c := NewClassifier(net, &AdamW{WeightDecay: 0.01})
		for i := 0; i < 3; i++ {
			if _, _, err := c.TrainStep(x, labels, 1e-3); err != nil {
				t.Fatal(err)
			}
		}
		var w []float64
		for _, p := range c.Params() {
			w = append(w, p.Value.Values()...)
		}
		return w
	}
	a, b := run(), run()
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("weight %d differs between identical runs: %v vs %v", i, a[i], b[i])
		}
	}
}

func BenchmarkTrainStepLeNet(b *testing.B) {
	s := layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10}
	net, _ := layers.Build("lenet", s)
	x, labels := syntheticBatch(64, s)
	c := NewClassifier(net, &SGD{Momentum: 0.9})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := c.TrainStep(x, labels, 0.01); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*64)/b.Elapsed().Seconds(), "images/s")
}

// A step starts from zero gradients whatever they held before it (NaN
// here): the linear layers' are cleared rather than zeroed (layers.ClearGrad)
// and their backward overwrites them, the rest are zeroed; the weights after
// two steps are the bits of a model whose gradients were zero, for every
// model.
func TestTrainStepIgnoresOldGradients(t *testing.T) {
	for _, name := range layers.ModelNames() {
		s := layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Seed: 4}
		var weights [2][]float64
		for k := range weights {
			net, err := layers.Build(name, s)
			if err != nil {
				t.Fatal(err)
			}
			if k == 1 {
				net.Walk("", func(_ string, p *layers.Param) {
					if p.Grad != nil {
						p.Grad.Fill(math.NaN())
					}
				})
			}
			x, labels := syntheticBatch(6, s)
			c := NewClassifier(net, &SGD{Momentum: 0.9, WeightDecay: 1e-4})
			for range 2 {
				if _, _, err := c.TrainStep(x, labels, 0.05); err != nil {
					t.Fatal(err)
				}
			}
			net.Walk("", func(_ string, p *layers.Param) { weights[k] = append(weights[k], p.Value.Values()...) })
		}
		for i, v := range weights[1] {
			if math.Float64bits(v) != math.Float64bits(weights[0][i]) {
				t.Fatalf("%s: weight %d is %v after steps from NaN gradients, %v from zeros", name, i, v, weights[0][i])
			}
		}
	}
}

// Labels not one per row are refused, whole batch or in micro-batches,
// not sliced past (a panic) or left unread.
func TestTrainStepRefusesLabelsNotOnePerRow(t *testing.T) {
	s := layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10}
	net, err := layers.Build("lenet", s)
	if err != nil {
		t.Fatal(err)
	}
	x, labels := syntheticBatch(5, s)
	for _, micro := range []int{-1, 2} {
		c := NewClassifier(net, &SGD{})
		c.MicroBatch = micro
		for _, l := range [][]int32{labels[:3], append(slices.Clone(labels), 1, 2)} {
			if _, _, err := c.TrainStep(x, l, 0.01); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d labels for a batch of", len(l))) {
				t.Errorf("micro-batch %d, %d labels for 5 rows: %v", micro, len(l), err)
			}
		}
	}
}

// Adam with weight decay (L2 added to the gradient) leaves the gradients as
// they were, as torch.optim.Adam leaves .grad: the gradient histograms read
// them after the step.
func TestAdamL2LeavesTheGradients(t *testing.T) {
	p := &layers.Param{Value: engine.New(engine.Float32, 3), Grad: engine.New(engine.Float32, 3)}
	copy(p.Value.Float32(), []float32{1, -2, 3})
	copy(p.Grad.Float32(), []float32{0.5, 0.25, -1})
	o := &AdamW{WeightDecay: 0.1, L2: true}
	if err := o.Step([]*layers.Param{p}, 0.01); err != nil {
		t.Fatal(err)
	}
	if g := p.Grad.Float32(); !slices.Equal(g, []float32{0.5, 0.25, -1}) {
		t.Fatalf("gradients after the step: %v", g)
	}
	// The step itself used g + wd·w: torch.optim.Adam(lr=0.01,
	// weight_decay=0.1) moves each weight by lr against the sign of that.
	want := []float32{1 - 0.01, -2 - 0.01, 3 + 0.01} // g+wd·w = 0.6, 0.05, -0.7
	for i, w := range p.Value.Float32() {
		if math.Abs(float64(w-want[i])) > 1e-6 {
			t.Fatalf("weights %v, want %v", p.Value.Float32(), want)
		}
	}
}

// Misused optimisers are errors, not panics or NaN weights: no optimiser,
// and AdamW betas torch.optim.AdamW refuses.
func TestOptimizerMisuseIsAnError(t *testing.T) {
	s := layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10}
	net, err := layers.Build("lenet", s)
	if err != nil {
		t.Fatal(err)
	}
	x, labels := syntheticBatch(4, s)
	if _, _, err := NewClassifier(net, nil).TrainStep(x, labels, 0.01); err == nil || !strings.Contains(err.Error(), "needs an optimizer") {
		t.Errorf("no optimizer: %v", err)
	}
	if _, _, err := NewClassifier(net, &AdamW{Beta1: 1}).TrainStep(x, labels, 0.01); err == nil || !strings.Contains(err.Error(), "betas") {
		t.Errorf("AdamW beta1 1: %v", err)
	}
}

// TrainOnBatch misused is an error, not a panic or a silent no-op: no
// batch, no inputs, no labels, a learning rate that is not a number ≥ 0; and
// NewTrainer without a model.
func TestTrainOnBatchMisuse(t *testing.T) {
	if _, err := NewTrainer(blobConfigForStep(), nil); err == nil {
		t.Error("NewTrainer without a model: no error")
	}
	s := layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10}
	net, err := layers.Build("lenet", s)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(blobConfigForStep(), net)
	if err != nil {
		t.Fatal(err)
	}
	x, labels := syntheticBatch(4, s)
	ok := &data.Batch{X: x, Labels: labels, Indices: []int{0, 1, 2, 3}}
	for name, c := range map[string]struct {
		b  *data.Batch
		lr float64
	}{
		"no batch": {nil, 0.01}, "no inputs": {&data.Batch{Labels: labels, Indices: ok.Indices}, 0.01},
		"no labels": {&data.Batch{X: x, Indices: ok.Indices}, 0.01}, "NaN lr": {ok, math.NaN()}, "∞ lr": {ok, math.Inf(1)}, "negative lr": {ok, -1},
	} {
		if _, _, err := tr.TrainOnBatch(nil, c.b, c.lr); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, _, err := tr.TrainOnBatch(nil, ok, 0.01); err != nil {
		t.Errorf("a good batch: %v", err)
	}
}

func blobConfigForStep() Config {
	c := DefaultConfig()
	c.Model = "lenet"
	return c
}
