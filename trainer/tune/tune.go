// Package tune searches training settings: grid search, seeded random
// search, and successive halving in ASHA's asynchronous form, over a space
// of trainer.Config settings.
//
// Each trial is an ordinary kiln train run directory, DIR/trials/<NNN>/, and
// the whole tune is DIR/tune.json, rewritten atomically whenever a trial
// starts, passes or fails a rung, or ends. A killed tune resumes from that
// file: finished trials are never run again, and a trial that was running
// continues from its checkpoint when its directory has one (the trainer's
// resume, which ends with exactly the weights of an uninterrupted run), or
// starts again from scratch when it has none. A trial is finished only once
// tune.json holds its final figures, and its run has ended only once its
// directory holds summary.json: a trial whose run ended is recorded from it,
// and one that successive halving had stopped but whose run had not ended
// runs again from scratch to the validation that stopped it.
//
// Successive halving is ASHA's stopping variant (Li et al., "A System for
// Massively Parallel Hyperparameter Tuning", 2020; Ray Tune's
// AsyncHyperBand): rungs sit at r·η^k epochs or steps; a trial that reaches a
// rung reports its validation metric through the trainer's OnValidation
// callback and continues only if it is among the best ⌊n/η⌋ of the n trials
// that have reported at that rung so far (the best always continues);
// otherwise the callback stops it. No trial waits for others, so parallel
// workers stay busy; the price is that early trials are judged against fewer
// peers. To narrow that, a trial still running stays subject to the rungs it
// has passed: once later trials push it out of a rung's top ⌊n/η⌋, its next
// validation stops it. A trial that finished before its peers arrived keeps
// its result (with one worker, every trial but the last few).
//
// Trials run in this process, up to Parallel at a time. The engine's worker
// pool is shared: the caller sizes it to cores/Parallel threads, a trial
// that finds it busy runs its ops on its own goroutine, so no more than the
// machine's cores compute at once.
package tune

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/kiln-ml/kiln/internal/durable"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

// Strategies lists the search strategies.
var Strategies = []string{"grid", "random", "halving"}

// Report is what a running trial says at each validation.
type Report struct {
	Step  int
	Epoch float64 // fractional within an epoch
	// TotalSteps is the run's length in steps (0: unknown); rungs at or past
	// it are not decision points.
	TotalSteps int
	Metrics    map[string]float64 // val_loss, val_acc, …
}

// Run is one start of a trial, as an Objective receives it.
type Run struct {
	Dir    string         // the trial's run directory
	Config trainer.Config // validated; RunDir is Dir
	Resume bool           // Dir holds a checkpoint to continue from
	// Report is called at every validation; true asks the run to stop.
	Report func(Report) bool
}

// Outcome is what a finished run produced.
type Outcome struct {
	Metrics map[string]float64 // val_*, test_* at the run's end
	Epochs  int
	Steps   int
	// Seconds is the run's training time over all its starts, when known
	// (0: unknown): the tune times only the starts that end in this process.
	Seconds float64
}

// Objective runs one trial. It returns trainer.ErrInterrupted (or any error
// once ctx is done) when cancelled, leaving a checkpoint to resume from.
type Objective func(ctx context.Context, r Run) (Outcome, error)

// Tuner runs a tune kept in Dir.
type Tuner struct {
	Dir       string
	State     *State
	Objective Objective
	// Parallel is how many trials run at once (at least 1).
	Parallel int
	// Threads is recorded in each trial's configuration; the engine's pool,
	// which is the process's, is the caller's to size.
	Threads int
	Log     zerolog.Logger
	// OnTrialEnd, when set, is called after each trial ends and the state
	// is saved (not under the tuner's lock).
	OnTrialEnd func(Trial)

	mu      sync.Mutex
	lastErr error // of the last save in finish
}

// Start creates a tune in dir: every trial's configuration, drawn or
// enumerated now and validated before any runs, saved as tune.json.
func Start(dir string, base trainer.Config, space *Space, set Settings) (*Tuner, error) {
	if _, err := os.Stat(filepath.Join(dir, StateFile)); err == nil {
		return nil, fmt.Errorf("%s already holds a tune: pass --resume to continue it, or choose another --run-dir", dir)
	}
	if f := trainer.RunFileIn(dir); f != "" {
		return nil, fmt.Errorf("%s holds a training run (%s), not a tune: choose another --run-dir for the tune", dir, f)
	}
	if err := space.Check(); err != nil {
		return nil, err
	}
	if err := checkSettings(&set, base, space); err != nil {
		return nil, err
	}
	var params []Params
	switch set.Strategy {
	case "grid":
		n := space.GridSize()
		if n > 100000 {
			return nil, fmt.Errorf("--strategy grid: the grid has %d points; narrow the space or use random", n)
		}
		params = space.Grid()
		if set.Trials > 0 && set.Trials < len(params) {
			params = params[:set.Trials]
		}
	default:
		params = space.Draws(set.Seed, set.Trials)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	st := &State{Version: stateVersion, Settings: set, Base: base, Space: space, Created: now, Updated: now}
	valid := 0
	var firstErr error
	for i, p := range params {
		t := &Trial{ID: i + 1, Params: p, Status: Pending}
		t.Dir = filepath.Join(TrialsDir, t.Name())
		c, err := trialConfig(base, p, space, set)
		c.RunDir = filepath.Join(dir, t.Dir)
		t.Config = c
		if err != nil {
			t.Status, t.Error = Invalid, err.Error()
			firstErr = cmp.Or(firstErr, fmt.Errorf("trial %s: %w", t.Name(), err))
		} else {
			valid++
		}
		st.Trials = append(st.Trials, t)
	}
	if valid == 0 {
		return nil, fmt.Errorf("no valid trial in the space: %w", firstErr)
	}
	if err := os.MkdirAll(filepath.Join(dir, TrialsDir), 0o755); err != nil {
		return nil, &WriteError{fmt.Errorf("tune directory: %w", err)}
	}
	if err := st.save(dir); err != nil {
		os.Remove(filepath.Join(dir, TrialsDir)) // still empty: leave nothing for a tune that did not start
		return nil, &WriteError{err}
	}
	return &Tuner{Dir: dir, State: st, Parallel: 1, Log: zerolog.Nop()}, nil
}

// WriteError is Start failing to write the tune directory (a full disk, no
// permission): not a mistake in the settings.
type WriteError struct{ Err error }

func (e *WriteError) Error() string { return e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }

func checkSettings(set *Settings, base trainer.Config, space *Space) error {
	if !slices.Contains(Strategies, set.Strategy) {
		return fmt.Errorf("--strategy %q: want %s", set.Strategy, strings.Join(Strategies, ", "))
	}
	if !slices.Contains(Metrics, set.Metric) {
		return fmt.Errorf("--metric %q: want one of %s", set.Metric, strings.Join(Metrics, ", "))
	}
	switch {
	case set.Trials < 0:
		return fmt.Errorf("--trials %d: must not be negative", set.Trials)
	case set.Trials == 0 && set.Strategy != "grid":
		return fmt.Errorf("--trials: --strategy %s needs a number of trials", set.Strategy)
	}
	if set.Strategy != "halving" {
		set.Eta, set.MinResource, set.Unit = 0, 0, ""
		return nil
	}
	switch {
	case set.Metric == "test_top5": // validations report no top-5
		return errors.New("--metric test_top5: halving compares the validations' val_top5, which runs do not report; rank by test_top5 under grid or random, or halve by val_acc")
	case set.Eta < 2:
		return fmt.Errorf("--eta %d: must be at least 2", set.Eta)
	case !(set.MinResource > 0) || math.IsInf(set.MinResource, 0):
		return fmt.Errorf("--min-resource %v: must be positive", set.MinResource)
	case set.Unit != "epochs" && set.Unit != "steps":
		return fmt.Errorf("--rung-unit %q: want epochs or steps", set.Unit)
	case set.Unit == "steps" && set.MinResource != math.Trunc(set.MinResource):
		return fmt.Errorf("--min-resource %v: steps must be a whole number", set.MinResource)
	case set.Unit == "steps" && slices.Contains(space.Keys(), "val_every"):
		return errors.New("val_every in the space: halving by steps validates at every rung's step (multiples of --min-resource) whatever a trial's val_every")
	case set.Unit == "steps" && base.ValEvery != 0 && int(set.MinResource)%base.ValEvery != 0:
		return fmt.Errorf("--val-every %d: halving by steps validates at every rung's step, multiples of --min-resource %v: give a --val-every that divides it",
			base.ValEvery, set.MinResource)
	case set.Unit == "epochs" && !space.Varies("epochs") && set.MinResource >= float64(base.Epochs):
		return fmt.Errorf("--strategy halving: the first rung (%v epochs) is not below --epochs %d, so no trial could be stopped; lower --min-resource, raise --epochs or use --rung-unit steps",
			set.MinResource, base.Epochs)
	}
	return nil
}

// trialConfig is base with p applied, adjusted for the tune and validated.
func trialConfig(base trainer.Config, p Params, space *Space, set Settings) (trainer.Config, error) {
	from, err := modelRecipe(base, p, set.Given)
	if err != nil {
		return base, err
	}
	c, err := p.Apply(from)
	if err != nil {
		return base, err
	}
	c.Threads, c.StopAfterEpoch = 0, 0
	if c.Dataset == "mnist-rotation" {
		c.Regression = true
	}
	if err := optimizerDefaults(&c, base, space, set.Given); err != nil {
		return c, err
	}
	if set.Strategy == "halving" && set.Unit == "steps" {
		// Validate at every rung's step (rungs are multiples of the first).
		if r := int(set.MinResource); c.ValEvery == 0 || r%c.ValEvery != 0 {
			c.ValEvery = r
		}
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	// A fixed setting this trial's model or schedule does not read is left
	// out (--hidden 32 over model: [lenet, mlp]); one the space gives it
	// makes the trial invalid.
	c.DropInert(func(key string) bool { return slices.Contains(space.Keys(), key) })
	if err := c.CheckInert(); err != nil {
		return c, err
	}
	if (strings.HasPrefix(set.Metric, "val_") || set.Strategy == "halving") && c.ValFraction == 0 && c.Dataset != "folder" { // a folder's val/ is one
		return c, fmt.Errorf("--metric %s needs a validation split (--val-fraction > 0)", valMetric(set.Metric))
	}
	return c, nil
}

// modelRecipe is what a trial starts from: the base, or where the space
// gives the trial another model than the base's, that model's recipe
// (trainer.DefaultConfigFor) with the settings the user gave laid over it,
// as kiln train --model does: gMLP trials trained at LeNet's SGD settings.
// Without the given keys (nil) it is the base.
func modelRecipe(base trainer.Config, p Params, given []string) (trainer.Config, error) {
	model, ok := p["model"].(string)
	if !ok || given == nil || model == base.Model {
		return base, nil
	}
	b, err := configMap(base)
	if err != nil {
		return base, err
	}
	r, err := configMap(trainer.DefaultConfigFor(model, base.Dataset))
	if err != nil {
		return base, err
	}
	br, err := configMap(trainer.DefaultConfigFor(base.Model, base.Dataset))
	if err != nil {
		return base, err
	}
	// The settings in which the two models' recipes differ, where the user
	// gave none, are the trial model's.
	for k, v := range r {
		if k != "model" && !slices.Contains(given, k) && fmt.Sprint(v) != fmt.Sprint(br[k]) {
			b[k] = v
		}
	}
	raw, err := json.Marshal(b)
	if err != nil {
		return base, err
	}
	out := trainer.Config{}
	return out, json.Unmarshal(raw, &out)
}

// choosesData reports whether a space key chooses a trial's data.
func choosesData(key string) bool {
	return key == "dataset" || key == "data_dir" || strings.HasPrefix(key, "csv_")
}

// ChoosesData reports whether the space chooses the trials' data (their
// data set, its directory or its CSV settings).
func (s *Space) ChoosesData() bool { return slices.ContainsFunc(s.Keys(), choosesData) }

// optimizerDefaults gives a trial whose optimiser the space chose that
// optimiser's own lr, momentum, Nesterov and weight decay (as kiln train
// --optimizer does, trainer.UseOptimizerDefaults) where neither the space
// nor the base sets them: an AdamW trial of --param optimizer=sgd,adamw
// trained at SGD's lr 0.05 with momentum. A base value other than its
// recipe's counts as set.
func optimizerDefaults(c *trainer.Config, base trainer.Config, space *Space, givenKeys []string) error {
	// A trial whose model the space chose, under an optimizer the user gave,
	// takes that optimizer's own settings as kiln train --model M
	// --optimizer O does (gMLP under --optimizer sgd trained at AdamW's lr).
	userOptOverModel := slices.Contains(space.Keys(), "model") && slices.Contains(givenKeys, "optimizer")
	if !slices.Contains(space.Keys(), "optimizer") && !userOptOverModel {
		if slices.Contains(space.Keys(), "momentum") && !slices.Contains(space.Keys(), "nesterov") && c.Momentum == 0 {
			c.Nesterov = false // plain SGD, as kiln train --momentum 0 is, not the recipe's Nesterov
		}
		return nil
	}
	recipe := trainer.DefaultConfigFor(c.Model, c.Dataset)
	b, err := configMap(base)
	if err != nil {
		return err
	}
	r, err := configMap(trainer.DefaultConfigFor(base.Model, base.Dataset))
	if err != nil {
		return err
	}
	given := func(key string) bool {
		if givenKeys != nil {
			return slices.Contains(space.Keys(), key) || slices.Contains(givenKeys, key)
		}
		return slices.Contains(space.Keys(), key) || fmt.Sprint(b[key]) != fmt.Sprint(r[key])
	}
	trainer.UseOptimizerDefaults(c, recipe, given)
	return nil
}

// Open loads the tune in dir to resume it (under its lock, the caller's),
// and removes the temporary files of its own that a kill left there.
func Open(dir string) (*Tuner, error) {
	st, err := LoadState(dir)
	if err != nil {
		return nil, err
	}
	if err := durable.RemoveTemps(dir, func(name string) bool { return slices.Contains([]string{StateFile, ResultsFile, BestFile}, name) }); err != nil {
		return nil, err
	}
	return &Tuner{Dir: dir, State: st, Parallel: 1, Log: zerolog.Nop()}, nil
}

// Run runs every trial that has not finished, Parallel at a time, and
// writes results.csv and best.yaml as trials end. It returns ctx's error
// (the tune can be resumed) when cancelled, and an error when no trial
// produced the metric.
func (tu *Tuner) Run(ctx context.Context) (*State, error) {
	if tu.Objective == nil {
		return nil, errors.New("tune: no objective")
	}
	// The first error of the tune's own (or of the machine: environmental)
	// stops the feed and the trials running, which --resume continues.
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	var queue []*Trial
	for _, t := range tu.State.Trials {
		if !t.Status.Finished() {
			queue = append(queue, t)
		}
	}
	workers := max(1, min(tu.Parallel, len(queue)))
	tu.Log.Info().Int("trials", len(tu.State.Trials)).Int("to_run", len(queue)).Int("parallel", workers).
		Str("strategy", tu.State.Settings.Strategy).Str("metric", tu.State.Settings.Metric).Msg("tune")
	ch := make(chan *Trial)
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range ch {
				if err := tu.runTrial(ctx, t); err != nil {
					errOnce.Do(func() { firstErr = err })
					stop(err)
				}
			}
		}()
	}
feed:
	for _, t := range queue {
		select {
		case ch <- t:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	tu.mu.Lock()
	defer tu.mu.Unlock()
	if err := tu.writeResults(); err != nil && firstErr == nil {
		firstErr = err
	}
	if firstErr != nil {
		return tu.State, firstErr
	}
	if err := ctx.Err(); err != nil && !tu.allFinished() {
		return tu.State, err // a stop after the last trial ended stops nothing
	}
	if best := tu.State.Best(); best == nil {
		return tu.State, fmt.Errorf("no trial produced %s", tu.State.Settings.Metric)
	}
	return tu.State, nil
}

// allFinished reports whether every trial has ended. Its caller holds tu.mu.
func (tu *Tuner) allFinished() bool {
	for _, t := range tu.State.Trials {
		if !t.Status.Finished() {
			return false
		}
	}
	return true
}

// runTrial runs one trial to its end. Its error is the tune's own (state
// not written); a failed run is a failed trial, not an error.
func (tu *Tuner) runTrial(ctx context.Context, t *Trial) error {
	if ctx.Err() != nil {
		return nil
	}
	dir := filepath.Join(tu.Dir, t.Dir)
	tu.mu.Lock()
	ended, err := tu.recordEnded(t, dir)
	if ended {
		tu.mu.Unlock()
		tu.ended(t)
		return tu.saveErr()
	}
	var run Run
	if err == nil {
		run, err = tu.startRun(t, dir)
	}
	tu.mu.Unlock()
	if err != nil {
		return err
	}

	ev := tu.Log.Info().Str("trial", t.Name()).Bool("resume", run.Resume)
	for _, k := range tu.State.Space.Keys() {
		ev = ev.Str(k, String(t.Params[k]))
	}
	ev.Msg("trial started")
	start := time.Now()
	out, err := tu.Objective(ctx, run)

	tu.mu.Lock()
	// A missing data file is the machine's, for the tune to wait on, unless
	// the space chose the data: then it is that trial's own.
	_, damaged := errors.AsType[*trainer.DamagedRunError](err) // the run directory's, whatever the data
	environmental := Environmental(err) && !tu.State.Space.ChoosesData() || damaged
	if err != nil && (errors.Is(err, trainer.ErrInterrupted) || ctx.Err() != nil || environmental) {
		t.Status, t.Error = Interrupted, ""
		t.Seconds += time.Since(start).Seconds()
		tu.Log.Warn().Str("trial", t.Name()).Msg("trial interrupted; --resume continues it from its checkpoint")
		serr := tu.save()
		tu.mu.Unlock()
		if environmental && ctx.Err() == nil {
			if d, ok := errors.AsType[*trainer.DamagedRunError](err); ok {
				return fmt.Errorf("trial %s: %w; restore the file, or remove the trial's folder to run it again from its start, then kiln tune --resume",
					t.Name(), d.Err)
			}
			return fmt.Errorf("trial %s: %w", t.Name(), err)
		}
		return serr
	}
	tu.finish(t, out, err, time.Since(start).Seconds())
	tu.mu.Unlock()
	tu.ended(t)
	return tu.saveErr()
}

// Environmental reports an error of the machine or the data rather than of
// the trial's settings: a full disk, a data file missing, a file that
// cannot be read or written. (What a data file holds is not: a trial's
// settings may read it otherwise, as a regression of a text target.) It does not fail the trial, which would
// then count as finished: it stops the tune, and --resume runs the trial
// again once the cause is mended.
func Environmental(err error) bool {
	var full *durable.DiskFullError
	var missing *data.NotFoundError
	var path *fs.PathError
	var damaged *trainer.DamagedRunError
	return errors.As(err, &full) || errors.As(err, &missing) || errors.As(err, &path) || errors.As(err, &damaged) ||
		errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ENOSPC)
}

// recordEnded records the end of a trial whose run ended but was killed
// before the tune wrote that down, and reports whether it did. Only the run
// directory's summary.json says a run ended: the trainer writes it last,
// after the test evaluation, so a stop decision in tune.json does not.
// Called with the lock held.
func (tu *Tuner) recordEnded(t *Trial, dir string) (bool, error) {
	if t.Starts == 0 {
		return false, nil
	}
	_, err := os.Stat(filepath.Join(dir, trainer.SummaryFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("trial %s: %w", t.Name(), err)
	}
	out, err := OutcomeFromRunDir(dir)
	if err == nil {
		out.Seconds, err = trainSeconds(dir)
	}
	tu.finish(t, out, err, 0)
	return true, nil
}

// trainSeconds is the training time a run directory's summary.json records:
// that of all the run's starts, those a kill cut short included, which the
// tune could not time.
func trainSeconds(dir string) (float64, error) {
	b, err := os.ReadFile(filepath.Join(dir, trainer.SummaryFile))
	if err != nil {
		return 0, err
	}
	var sum trainer.Summary
	if err := json.Unmarshal(b, &sum); err != nil {
		return 0, fmt.Errorf("run %s: %s: %w", dir, trainer.SummaryFile, err)
	}
	return sum.TrainSeconds, nil
}

// startRun records that t starts and returns its run: continued from its
// checkpoint when it has one, except for a trial successive halving had
// stopped, which runs again from scratch to the validation that stopped it.
// That trial's checkpoint, when there is one, was written at the stop, and
// the trainer would continue it past the stop; a fresh run of the same
// configuration reproduces the stopped one exactly. Called with the lock
// held.
func (tu *Tuner) startRun(t *Trial, dir string) (Run, error) {
	report := func(r Report) bool { return tu.report(t, r) }
	if t.StopAt > 0 {
		// The last weights go too: without a checkpoint beside them they
		// are a run whose checkpoint was lost, which is refused.
		for _, name := range []string{trainer.CheckpointFile, trainer.LastWeights} {
			err := os.Remove(filepath.Join(dir, name))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return Run{}, fmt.Errorf("trial %s: running it again to its stop: %w", t.Name(), err)
			}
		}
		report = tu.replay(t)
	}
	_, err := os.Stat(filepath.Join(dir, trainer.CheckpointFile))
	resume := err == nil
	t.Status, t.Error, t.Resumed = Running, "", resume
	t.Starts++
	t.Started = time.Now().UTC().Format(time.RFC3339)
	if err := tu.save(); err != nil {
		return Run{}, err
	}
	c := t.Config
	c.RunDir, c.Threads = dir, tu.Threads
	return Run{Dir: dir, Config: c, Resume: resume, Report: report}, nil
}

// replay is the Report of a stopped trial run again: the rungs hold its
// values already, so it only stops the run where successive halving did.
func (tu *Tuner) replay(t *Trial) func(Report) bool {
	set, step := tu.State.Settings, t.StopStep
	need := set.rungResource(t.StopAt - 1)
	return func(r Report) bool {
		if step > 0 {
			return r.Step >= step
		}
		// A tune.json that predates stop_step: the stop rung's validation.
		res := r.Epoch
		if set.Unit == "steps" {
			res = float64(r.Step)
		}
		return res+1e-9 >= need
	}
}

// finish records a trial's end, saves the state and the results. Called
// with the lock held.
func (tu *Tuner) finish(t *Trial, out Outcome, err error, seconds float64) {
	metric := tu.State.Settings.Metric
	t.Seconds += seconds
	t.Finished = time.Now().UTC().Format(time.RFC3339)
	if err == nil {
		t.Metrics, t.Epochs, t.Steps = out.Metrics, out.Epochs, out.Steps
		// The starts a kill cut short went untimed; the run's own time
		// counts them.
		t.Seconds = max(t.Seconds, out.Seconds)
		if v, ok := out.Metrics[metric]; ok && !math.IsNaN(v) {
			t.Metric = &v
		} else {
			have := make([]string, 0, len(out.Metrics))
			for k := range out.Metrics {
				have = append(have, k)
			}
			slices.Sort(have)
			err = fmt.Errorf("the run reported no %s (it has %s)", metric, strings.Join(have, ", "))
		}
	}
	ev := tu.Log.Info().Str("trial", t.Name())
	switch {
	case err != nil:
		t.Status, t.Error = Failed, err.Error()
		ev = tu.Log.Warn().Str("trial", t.Name()).Str("error", t.Error)
	case t.StopAt > 0:
		t.Status = Stopped
		ev = ev.Int("stopped_at_rung", t.StopAt)
	default:
		t.Status = Done
	}
	if t.Metric != nil {
		ev = ev.Float64(metric, *t.Metric)
	}
	ev.Str("status", string(t.Status)).Float64("seconds", math.Round(t.Seconds*10)/10).Msg("trial ended")
	tu.lastErr = tu.save()
	if tu.lastErr == nil {
		tu.lastErr = tu.writeResults()
	}
}

func (tu *Tuner) saveErr() error {
	tu.mu.Lock()
	defer tu.mu.Unlock()
	err := tu.lastErr
	tu.lastErr = nil
	return err
}

func (tu *Tuner) ended(t *Trial) {
	if tu.OnTrialEnd != nil {
		tu.mu.Lock()
		c := *t
		tu.mu.Unlock()
		tu.OnTrialEnd(c)
	}
}

func (tu *Tuner) save() error {
	tu.State.Updated = time.Now().UTC().Format(time.RFC3339)
	return tu.State.save(tu.Dir)
}

func (r *Rung) values() []float64 {
	out := make([]float64, 0, len(r.Values))
	for _, v := range r.Values {
		out = append(out, v)
	}
	return out
}

// rungResource is the epochs or steps of rung k (0-based).
func (set Settings) rungResource(k int) float64 {
	return set.MinResource * math.Pow(float64(set.Eta), float64(k))
}

// report applies successive halving at a validation: it records the trial
// at every rung it has newly reached and says whether to stop it.
func (tu *Tuner) report(t *Trial, r Report) bool {
	set := tu.State.Settings
	if set.Strategy != "halving" {
		return false
	}
	value, ok := r.Metrics[valMetric(set.Metric)]
	if !ok || math.IsNaN(value) {
		return false
	}
	res, total := r.Epoch, float64(t.Config.Epochs)
	if set.Unit == "steps" {
		res, total = float64(r.Step), float64(r.TotalSteps)
	}
	tu.mu.Lock()
	defer tu.mu.Unlock()
	if t.StopAt > 0 {
		return true
	}
	if total > 0 && res+1e-9 >= total {
		return false // the run's last validation: nothing is left to save by stopping it
	}
	changed := false
	maximize := Maximize(set.Metric)
	// A rung passed early, against few peers, is judged again as more
	// trials report there: a running trial that has fallen out of a rung's
	// top 1/eta stops now rather than run on.
	for k := 0; k < t.Rung && k < len(tu.State.Rungs); k++ {
		if v, ok := tu.State.Rungs[k].Values[t.ID]; ok && !promoted(tu.State.Rungs[k].values(), v, set.Eta, maximize) {
			t.StopAt, t.StopStep = k+1, r.Step
			tu.Log.Info().Str("trial", t.Name()).Int("rung", k+1).Float64(valMetric(set.Metric), v).
				Int("reported", len(tu.State.Rungs[k].Values)).Msg("stopped by successive halving: overtaken at a rung it had passed")
			if err := tu.save(); err != nil {
				tu.Log.Error().Err(err).Msg("saving the tune state")
			}
			return true
		}
	}
	for {
		k := t.Rung
		need := set.rungResource(k)
		if res+1e-9 < need || (total > 0 && need >= total-1e-9) {
			break
		}
		for len(tu.State.Rungs) <= k {
			tu.State.Rungs = append(tu.State.Rungs, &Rung{Resource: set.rungResource(len(tu.State.Rungs)), Values: map[int]float64{}})
		}
		rung := tu.State.Rungs[k]
		rung.Values[t.ID] = value
		values := rung.values()
		changed = true
		ev := tu.Log.Info().Str("trial", t.Name()).Int("rung", k+1).Float64(set.Unit, need).
			Float64(valMetric(set.Metric), value).Int("reported", len(values))
		if promoted(values, value, set.Eta, maximize) {
			t.Rung = k + 1
			ev.Msg("promoted")
			continue
		}
		t.StopAt, t.StopStep = k+1, r.Step
		ev.Msg("stopped by successive halving")
		break
	}
	if changed {
		if err := tu.save(); err != nil {
			tu.Log.Error().Err(err).Msg("saving the tune state")
		}
	}
	return t.StopAt > 0
}

// Diff names what a tune started from base, space and set would record
// otherwise than st does (the search settings, each --param dimension and
// the trials' base configuration, threads aside), "" when nothing: a resume
// given the flags that started the tune takes them, and any other flags are
// refused by name.
func Diff(st *State, base trainer.Config, space *Space, set Settings) (string, error) {
	if err := space.Check(); err != nil {
		return "", err
	}
	if err := checkSettings(&set, base, space); err != nil {
		return "", err
	}
	run := st.Base
	run.Threads, base.Threads = 0, 0
	run.DataDir, base.DataDir = "", "" // where the data is: a resume may name another place
	var d []string
	for _, x := range []struct{ run, now any }{
		{st.Settings, set}, {st.Space.byParam(), space.byParam()}, {run, base},
	} {
		if s := trainer.SettingsDiff(x.run, x.now); s != "" {
			d = append(d, s)
		}
	}
	return strings.Join(d, ", "), nil
}

// byParam is the space as "--param KEY" → its values as the flag gives
// them, for Diff.
func (s *Space) byParam() map[string]string {
	m := map[string]string{}
	if s != nil {
		for _, d := range s.Dims {
			m["--param "+d.Key] = d.spec()
		}
	}
	return m
}

// spec is the dimension as ParseParam reads it after KEY=.
func (d Dimension) spec() string {
	if d.IsRange() {
		t := fmt.Sprintf("%v..%v:%s", d.Min, d.Max, d.Scale)
		if d.Steps > 0 {
			t += fmt.Sprintf(":%d", d.Steps)
		}
		return t
	}
	v := make([]string, len(d.Values))
	for i, x := range d.Values {
		v[i] = fmt.Sprint(x)
	}
	return strings.Join(v, ",")
}
