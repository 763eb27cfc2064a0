package trainer

import (
	"math"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

// microModels are zoo models whose layers treat every sample alone: a small
// gMLP (layer norms, the SGU's token mixing within a sample) and the mlp.
var microModels = []struct {
	name string
	spec layers.Spec
}{
	{"gmlp", layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Hidden: 16, Depth: 1}},
	{"mlp", layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10}},
}

func buildMicro(t *testing.T, name string, s layers.Spec) layers.Layer {
	t.Helper()
	net, err := layers.Build(name, s)
	if err != nil {
		t.Fatal(err)
	}
	return net
}

// One step in micro-batches (even ones, and ones with a short last) lands
// where the step on the whole batch does: the same mean loss and correct
// count, the same weights up to float32's rounding of the gradients' sums.
// A micro-batch whose loss gradient were not scaled by its share of the
// batch, or whose backward overwrote the gradient of the one before, moves
// the weights by several times the tolerance.
func TestMicroBatchStepMatchesTheWholeBatch(t *testing.T) {
	for _, m := range microModels {
		for _, micro := range []int{4, 5, 11} {
			whole, parts := buildMicro(t, m.name, m.spec), buildMicro(t, m.name, m.spec)
			x, labels := syntheticBatch(12, m.spec)
			cw, cp := NewClassifier(whole, &SGD{}), NewClassifier(parts, &SGD{})
			cp.MicroBatch = micro
			lw, nw, err := cw.TrainStep(x, labels, 0.5)
			if err != nil {
				t.Fatal(err)
			}
			lp, np, err := cp.TrainStep(x, labels, 0.5)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(lw-lp) > 1e-6*math.Abs(lw) || nw != np {
				t.Errorf("%s micro %d: loss %v, %d correct; whole batch %v, %d", m.name, micro, lp, np, lw, nw)
			}
			pw, pp := cw.Params(), cp.Params()
			worst := 0.0
			for i := range pw {
				a, b := pw[i].Value.Float32(), pp[i].Value.Float32()
				for j := range a {
					worst = max(worst, math.Abs(float64(a[j])-float64(b[j])))
				}
			}
			if worst > 2e-6 {
				t.Errorf("%s micro %d: weights %g from the whole batch's step", m.name, micro, worst)
			}
		}
	}
}

// The logged step in micro-batches records one row a step: the batch's mean
// loss and its correct count.
func TestMicroBatchLoggedStepRecordsTheBatch(t *testing.T) {
	m := microModels[0]
	whole, parts := buildMicro(t, m.name, m.spec), buildMicro(t, m.name, m.spec)
	x, labels := syntheticBatch(12, m.spec)
	cw, cp := NewClassifier(whole, &SGD{Momentum: 0.9}), NewClassifier(parts, &SGD{Momentum: 0.9})
	cp.MicroBatch = 4
	lw, lp := engine.NewLossLog(4), engine.NewLossLog(4)
	for i := 0; i < 2; i++ {
		if err := cw.TrainStepLogged(x, labels, 0.1, lw); err != nil {
			t.Fatal(err)
		}
		if err := cp.TrainStepLogged(x, labels, 0.1, lp); err != nil {
			t.Fatal(err)
		}
	}
	rw, err := lw.Read(nil)
	if err != nil {
		t.Fatal(err)
	}
	rp, err := lp.Read(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rp) != 2 {
		t.Fatalf("%d records for 2 steps in micro-batches", len(rp))
	}
	for i := range rw {
		if math.Abs(rw[i].Loss-rp[i].Loss) > 1e-5*math.Abs(rw[i].Loss) || rw[i].Correct != rp[i].Correct {
			t.Errorf("step %d: micro-batches logged %+v, the whole batch %+v", i, rp[i], rw[i])
		}
	}
}

// Micro-batched steps are deterministic: two runs from the same weights end
// with the same bits.
func TestMicroBatchStepsAreDeterministic(t *testing.T) {
	m := microModels[0]
	x, labels := syntheticBatch(12, m.spec)
	var runs [2][]float32
	for r := range runs {
		c := NewClassifier(buildMicro(t, m.name, m.spec), &SGD{Momentum: 0.9})
		c.MicroBatch = 5
		for i := 0; i < 3; i++ {
			if _, _, err := c.TrainStep(x, labels, 0.1); err != nil {
				t.Fatal(err)
			}
		}
		for _, p := range c.Params() {
			runs[r] = append(runs[r], p.Value.Float32()...)
		}
	}
	for i := range runs[0] {
		if math.Float32bits(runs[0][i]) != math.Float32bits(runs[1][i]) {
			t.Fatalf("weight %d: %v then %v", i, runs[0][i], runs[1][i])
		}
	}
}

// A regression step in micro-batches matches the whole batch's too.
func TestMicroBatchRegressionMatchesTheWholeBatch(t *testing.T) {
	s := layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 1}
	x, _ := syntheticBatch(10, s)
	y := engine.New(engine.Float32, 10, 1)
	for i := range y.Float32() {
		y.Float32()[i] = float32(i%3) - 1
	}
	rw, rp := NewRegressor(buildMicro(t, "mlp", s), &SGD{}), NewRegressor(buildMicro(t, "mlp", s), &SGD{})
	rp.MicroBatch = 3
	lw, err := rw.TrainStep(x, y, 0.1)
	if err != nil {
		t.Fatal(err)
	}
	lp, err := rp.TrainStep(x, y, 0.1)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(lw-lp) > 1e-6*math.Abs(lw) {
		t.Errorf("loss %v in micro-batches, %v whole", lp, lw)
	}
	pw, pp := rw.Params(), rp.Params()
	for i := range pw {
		a, b := pw[i].Value.Float32(), pp[i].Value.Float32()
		for j := range a {
			if math.Abs(float64(a[j])-float64(b[j])) > 2e-6 {
				t.Fatalf("param %d[%d]: %v in micro-batches, %v whole", i, j, b[j], a[j])
			}
		}
	}
}

// Batch norm's statistics would be a micro-batch's: a model with it is
// refused, and so is a micro-batch under -1 (-1: the whole batch; 0: Kiln's choice).
func TestMicroBatchRefusesBatchNorm(t *testing.T) {
	s := layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10}
	c := DefaultConfig()
	c.MicroBatch = 16
	if _, err := NewTrainer(c, buildMicro(t, "cnn", s)); err == nil || !strings.Contains(err.Error(), "batch norm") {
		t.Errorf("cnn with micro_batch 16: %v", err)
	}
	if _, err := NewTrainer(c, buildMicro(t, "gmlp", s)); err != nil {
		t.Errorf("gmlp with micro_batch 16: %v", err)
	}
	if err := CheckMicroBatch(buildMicro(t, "mlp", s), -2); err == nil {
		t.Error("micro_batch -2 accepted")
	}
	c.MicroBatch = -2
	if err := c.ValidateTraining(); err == nil || !strings.Contains(err.Error(), "micro_batch") {
		t.Errorf("config micro_batch -2: %v", err)
	}
}

// A micro-batched step in steady state allocates nothing either.
func TestMicroBatchStepDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are not meaningful under the race detector; run without -race")
	}
	m := microModels[0]
	x, labels := syntheticBatch(8, m.spec)
	c := NewClassifier(buildMicro(t, m.name, m.spec), &SGD{Momentum: 0.9})
	c.MicroBatch = 4
	log := engine.NewLossLog(64)
	step := func() {
		if err := c.TrainStepLogged(x, labels, 0.01, log); err != nil {
			t.Fatal(err)
		}
		if log.Len() == log.Cap() {
			if _, err := log.Read(nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i := 0; i < 5; i++ {
		step()
	}
	if a := testing.AllocsPerRun(5, step); a != 0 {
		t.Errorf("%v allocations per micro-batched step", a)
	}
}
