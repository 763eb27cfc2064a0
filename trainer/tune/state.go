package tune

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kiln-ml/kiln/trainer"
)

// The tune directory:
//
//	tune.json        the whole state, rewritten atomically at every change
//	trials/<NNN>/    one kiln train run directory per trial
//	results.csv      trial,status,<metric>,… then each searched setting
//	best.yaml        the best trial's configuration, for kiln train --config
const (
	StateFile   = trainer.TuneFile
	ResultsFile = "results.csv"
	BestFile    = "best.yaml"
	TrialsDir   = "trials"
)

// Status is where a trial stands.
type Status string

const (
	Pending     Status = "pending"
	Running     Status = "running"
	Done        Status = "done"        // trained to its end (or its own early stopping)
	Stopped     Status = "stopped"     // stopped at a rung by successive halving
	Failed      Status = "failed"      // the run returned an error
	Invalid     Status = "invalid"     // the configuration failed validation; never run
	Interrupted Status = "interrupted" // the tune was stopped while it ran
)

// Finished reports whether a trial needs no more running.
func (s Status) Finished() bool {
	return s == Done || s == Stopped || s == Failed || s == Invalid
}

// Trial is one configuration of the search and what became of it.
type Trial struct {
	ID     int            `json:"id"`
	Dir    string         `json:"dir"` // relative to the tune directory
	Status Status         `json:"status"`
	Params Params         `json:"params"`
	Config trainer.Config `json:"config"`
	// Metric is the tune's metric at the trial's end; Metrics every figure
	// its run reported (val_loss, val_acc, test_acc, …).
	Metric  *float64           `json:"metric,omitempty"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
	Epochs  int                `json:"epochs,omitempty"`
	Steps   int                `json:"steps,omitempty"`
	Seconds float64            `json:"seconds,omitempty"`
	// Rung is how many rungs of successive halving the trial has passed;
	// StopAt is the rung that stopped it (0: none), StopStep the step of the
	// validation at which it did: where a run of it again must stop.
	Rung     int    `json:"rung,omitempty"`
	StopAt   int    `json:"stop_at,omitempty"`
	StopStep int    `json:"stop_step,omitempty"`
	Error    string `json:"error,omitempty"`
	// Starts counts how often the trial was started: 1 for a trial that ran
	// once, more when a resumed tune restarted it.
	Starts   int    `json:"starts"`
	Resumed  bool   `json:"resumed,omitempty"` // last start continued a checkpoint
	Started  string `json:"started,omitempty"`
	Finished string `json:"finished,omitempty"`
}

// Name is the trial's three-digit name, as its directory has it.
func (t *Trial) Name() string { return fmt.Sprintf("%03d", t.ID) }

// Rung holds the metric values trials reported on reaching one rung of
// successive halving.
type Rung struct {
	Resource float64         `json:"resource"` // epochs or steps
	Values   map[int]float64 `json:"values"`   // trial ID → metric
}

// Settings are the choices a tune is started with and keeps on --resume.
type Settings struct {
	Strategy string `json:"strategy"` // grid, random or halving
	Trials   int    `json:"trials"`   // requested; a grid may have fewer points
	Metric   string `json:"metric"`   // val_acc, val_loss, …
	Seed     uint64 `json:"seed"`     // the sampling seed
	// Successive halving: rungs at MinResource·Eta^k epochs or steps (Unit).
	Eta         int     `json:"eta,omitempty"`
	MinResource float64 `json:"min_resource,omitempty"`
	Unit        string  `json:"unit,omitempty"`
	// Given are the base's settings the user set (a flag, a config file's
	// key), by key: the others are the recipe's, which a trial's own model
	// or optimizer replaces with its own. Used when the trials are made
	// (their configurations are saved), so not saved itself; nil: a base
	// value other than its recipe's counts as given.
	Given []string `json:"-"`
}

// State is tune.json.
type State struct {
	Version  int            `json:"version"`
	Settings Settings       `json:"settings"`
	Base     trainer.Config `json:"base"`
	Space    *Space         `json:"space"`
	Trials   []*Trial       `json:"trials"`
	Rungs    []*Rung        `json:"rungs,omitempty"`
	// Threads is each trial's engine threads when the tune first ran: a
	// resume without --threads takes them, so that its trials give the bits
	// an uninterrupted tune's would (results depend on the thread count).
	Threads int `json:"threads,omitempty"`
	// Parallel is the trials run at once when the tune first ran: a resume
	// without --parallel takes it (under halving it decides which trials
	// stop, as trials overtake each other).
	Parallel int    `json:"parallel,omitempty"`
	Created  string `json:"created"`
	Updated  string `json:"updated"`
}

const stateVersion = 1

func (s *State) save(dir string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return trainer.WriteFileAtomic(filepath.Join(dir, StateFile), append(b, '\n'))
}

// LoadState reads a tune directory's tune.json.
func LoadState(dir string) (*State, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("%s holds no tune (no %s)", dir, StateFile)
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, StateFile), err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("%s: version %d, this kiln reads version %d", filepath.Join(dir, StateFile), s.Version, stateVersion)
	}
	if err := s.Space.Check(); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, StateFile), err)
	}
	for i, t := range s.Trials {
		if t == nil || t.ID != i+1 {
			return nil, fmt.Errorf("%s: trial %d is missing or out of order", filepath.Join(dir, StateFile), i+1)
		}
	}
	return &s, nil
}

// Maximize reports whether a larger value of metric is better.
func Maximize(metric string) bool {
	return strings.HasSuffix(metric, "_acc") || strings.HasSuffix(metric, "_top5") || strings.HasSuffix(metric, "_r2")
}

// Metrics lists the metrics a tune can rank by.
var Metrics = []string{"val_acc", "val_loss", "val_rmse", "val_mae", "test_acc", "test_loss", "test_rmse", "test_mae", "test_top5"}

// valMetric is the validation counterpart of metric: what successive
// halving compares at its rungs (the test split is for the end only).
func valMetric(metric string) string {
	return "val_" + strings.TrimPrefix(strings.TrimPrefix(metric, "val_"), "test_")
}

// better reports whether a is better than b.
func better(a, b float64, maximize bool) bool {
	if maximize {
		return a > b
	}
	return a < b
}

// promoted is successive halving's rule at a rung: value continues if it is
// among the best ⌊n/eta⌋ of the n values reported there so far (it among
// them), and at least the best one always does.
func promoted(values []float64, value float64, eta int, maximize bool) bool {
	k := max(1, len(values)/eta)
	ahead := 0
	for _, v := range values {
		if better(v, value, maximize) {
			ahead++
		}
	}
	return ahead < k
}
