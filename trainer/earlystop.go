package trainer

import (
	"fmt"
	"math"
	"strings"
)

// EarlyStopping watches one metric and says when a run should stop: when the
// metric reaches Target, or when it has not improved by MinDelta for Patience
// checks. The mode (lower or higher is better) follows the metric.
type EarlyStopping struct {
	Metric   string  // val_loss, val_acc, train_loss (or val_rmse for regression)
	Patience int     // checks without improvement before stopping (0: never on patience)
	MinDelta float64 // smallest change that counts as an improvement
	Target   float64 // stop once the metric is at least this good (0: no target)

	Best      float64 `json:"best"`
	BestStep  int     `json:"best_step"`
	BestEpoch int     `json:"best_epoch"`
	Bad       int     `json:"bad"`
	Seen      bool    `json:"seen"`
}

// EarlyStopMetrics lists the metrics early stopping can watch.
var EarlyStopMetrics = []string{"val_loss", "val_acc", "train_loss", "val_rmse"}

// Validate checks the metric name and numbers.
func (e *EarlyStopping) Validate() error {
	ok := false
	for _, m := range EarlyStopMetrics {
		ok = ok || m == e.Metric
	}
	if !ok {
		return fmt.Errorf("--early-stop %q: want one of %s", e.Metric, strings.Join(EarlyStopMetrics, ", "))
	}
	if e.Patience < 0 || e.MinDelta < 0 || math.IsNaN(e.Target) {
		return fmt.Errorf("early stopping: patience and min-delta must not be negative")
	}
	return nil
}

// HigherIsBetter reports the metric's mode.
func (e *EarlyStopping) HigherIsBetter() bool { return e.Metric == "val_acc" }

// Observe records a value at (epoch, step) and reports whether it is a new
// best and, when the run should stop, why.
func (e *EarlyStopping) Observe(v float64, epoch, step int) (improved bool, stop string) {
	if math.IsNaN(v) {
		return false, ""
	}
	sign := 1.0
	if e.HigherIsBetter() {
		sign = -1
	}
	if !e.Seen || sign*(e.Best-v) > e.MinDelta {
		e.Best, e.BestStep, e.BestEpoch, e.Bad, e.Seen = v, step, epoch, 0, true
		improved = true
	} else {
		e.Bad++
	}
	if e.Target != 0 && sign*(e.Target-v) >= 0 {
		return improved, fmt.Sprintf("%s reached the target %g (%.6g at epoch %d, step %d)", e.Metric, e.Target, v, epoch, step)
	}
	if e.Patience > 0 && e.Bad >= e.Patience {
		return improved, fmt.Sprintf("%s did not improve by more than %g for %d checks (best %.6g at epoch %d, step %d)",
			e.Metric, e.MinDelta, e.Patience, e.Best, e.BestEpoch, e.BestStep)
	}
	return improved, ""
}
