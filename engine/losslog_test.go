package engine_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// A logged step's record is the loss and count SoftmaxCrossEntropy returns
// for the same inputs, bit for bit, with the same probabilities and
// gradient; records come back oldest first, and a read empties the log.
func TestLossLogRecordsWhatSoftmaxCrossEntropyReturns(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	log := engine.NewLossLog(3)
	var want []engine.StepLoss
	for step, n := range []int{5, 1, 17} {
		logits := engine.New(engine.Float32, n, 10)
		for i := range logits.Float32() {
			logits.Float32()[i] = float32(rng.NormFloat64() * 3)
		}
		labels := randLabels(rng, n, 10)
		p, g := engine.New(engine.Float32, n, 10), engine.New(engine.Float32, n, 10)
		loss, correct, err := engine.SoftmaxCrossEntropy(p, g, logits, labels, 0.1, 1)
		opsMust(t, err)
		want = append(want, engine.StepLoss{Loss: loss, Correct: correct})
		lp, lg := engine.New(engine.Float32, n, 10), engine.New(engine.Float32, n, 10)
		opsMust(t, engine.SoftmaxCrossEntropyLogged(lp, lg, logits, labels, 0.1, 1, log))
		if !bitsEqual(p, lp) || !bitsEqual(g, lg) {
			t.Fatalf("step %d: the logged call's probabilities or gradient differ", step)
		}
		if log.Len() != step+1 {
			t.Fatalf("after step %d the log holds %d records", step, log.Len())
		}
	}
	got, err := log.Read(nil)
	opsMust(t, err)
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if math.Float64bits(got[i].Loss) != math.Float64bits(want[i].Loss) || got[i].Correct != want[i].Correct {
			t.Errorf("record %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if log.Len() != 0 {
		t.Errorf("%d records after a read", log.Len())
	}
	if again, err := log.Read(nil); err != nil || len(again) != 0 {
		t.Errorf("a second read: %v, %v", again, err)
	}
}

// A full log refuses the next step without touching its outputs; a read
// makes room again. A NaN loss is a record, not an error.
func TestLossLogFullAndNaN(t *testing.T) {
	log := engine.NewLossLog(1)
	logits := engine.New(engine.Float32, 2, 3)
	logits.Float32()[4] = float32(math.NaN())
	p, g := engine.New(engine.Float32, 2, 3), engine.New(engine.Float32, 2, 3)
	labels := []int32{0, 1}
	opsMust(t, engine.SoftmaxCrossEntropyLogged(p, g, logits, labels, 0, 1, log))
	before := g.Clone()
	g.Float32()[0] = 7
	before.Float32()[0] = 7
	err := engine.SoftmaxCrossEntropyLogged(p, g, logits, labels, 0, 1, log)
	if !errors.Is(err, engine.ErrLossLogFull) {
		t.Fatalf("a step into a full log: %v", err)
	}
	if !bitsEqual(g, before) {
		t.Error("the refused step wrote its gradient")
	}
	recs, err := log.Read(nil)
	opsMust(t, err)
	if len(recs) != 1 || !math.IsNaN(recs[0].Loss) {
		t.Fatalf("records %+v, want one NaN loss", recs)
	}
	opsMust(t, engine.SoftmaxCrossEntropyLogged(p, g, logits, labels, 0, 1, log))
	if err := engine.SoftmaxCrossEntropyLogged(p, g, logits, labels, 0, 1, nil); err == nil {
		t.Error("no log: no error")
	}
	if err := engine.SoftmaxCrossEntropyLogged(p, g, logits, []int32{0}, 0, 1, engine.NewLossLog(2)); err == nil {
		t.Error("one label for two rows: no error")
	}
}
