package trainer

import (
	"strings"
	"testing"
)

func TestEarlyStoppingPatienceAndTarget(t *testing.T) {
	e := &EarlyStopping{Metric: "val_loss", Patience: 2, MinDelta: 0.01}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	steps := []float64{1.0, 0.8, 0.795, 0.799}
	var stop string
	for i, v := range steps {
		_, stop = e.Observe(v, 1, i)
		if stop != "" && i != 3 {
			t.Fatalf("stopped early at %d: %s", i, stop)
		}
	}
	if stop == "" || e.Best != 0.8 || e.BestStep != 1 {
		t.Fatalf("stop=%q best=%v at %d", stop, e.Best, e.BestStep)
	}
	acc := &EarlyStopping{Metric: "val_acc", Target: 0.99}
	if _, stop := acc.Observe(0.98, 1, 10); stop != "" {
		t.Fatal("stopped below target")
	}
	if _, stop := acc.Observe(0.991, 2, 20); !strings.Contains(stop, "target") {
		t.Fatalf("target not reached: %q", stop)
	}
	// The boundaries, as Keras and Lightning draw them: a tie with the best
	// is no improvement (at min_delta 0 a metric stuck at its best never
	// stopped, and restore-best kept the later epoch), and the target
	// reached exactly stops (99 of 100 right is 0.99).
	tie := &EarlyStopping{Metric: "val_acc", Patience: 1}
	tie.Observe(0.5, 1, 10)
	if improved, stop := tie.Observe(0.5, 2, 20); improved || stop == "" || tie.BestStep != 10 {
		t.Fatalf("a tie with the best: improved %v, stop %q, best at step %d", improved, stop, tie.BestStep)
	}
	exact := &EarlyStopping{Metric: "val_acc", Target: 0.99}
	if _, stop := exact.Observe(99.0/100, 1, 10); !strings.Contains(stop, "target") {
		t.Fatalf("the target reached exactly: %q", stop)
	}
	if err := (&EarlyStopping{Metric: "val_f1"}).Validate(); err == nil {
		t.Fatal("unknown metric accepted")
	}
}
