package trainer

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/schollz/progressbar/v3"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/engine/safetensors"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer/data"
)

// ErrInterrupted is returned by Fit when its context is cancelled (Ctrl-C):
// a checkpoint was written and the run can be resumed.
var ErrInterrupted = errors.New("training interrupted; checkpoint written, resume with --resume")

// Callbacks let a program watch a run and stop it. Any may be nil.
type Callbacks struct {
	// OnValidation runs after each validation; returning true stops the run.
	OnValidation func(MetricsRecord) bool
	// OnEpochEnd runs after each epoch with its training record; returning
	// true stops the run.
	OnEpochEnd func(MetricsRecord) bool
}

// Summary is what a run produced: summary.json.
type Summary struct {
	Model             string   `json:"model"`
	Dataset           string   `json:"dataset"`
	Params            int      `json:"params"`
	TestAccuracy      *float64 `json:"test_accuracy,omitempty"`
	TestTop5          *float64 `json:"test_top5,omitempty"`
	TestRMSE          *float64 `json:"test_rmse,omitempty"`
	TestMAE           *float64 `json:"test_mae,omitempty"`
	TestR2            *float64 `json:"test_r2,omitempty"`
	TestLoss          *float64 `json:"test_loss,omitempty"` // absent without a test pass
	Weights           string   `json:"weights"`
	EpochsRun         int      `json:"epochs_run"`
	BestEpoch         int      `json:"best_epoch"`
	BestStep          int      `json:"best_step,omitempty"` // of the best validation (with early stopping)
	StoppedEarly      bool     `json:"stopped_early"`
	StopReason        string   `json:"stop_reason"`
	Steps             int      `json:"steps"`
	TrainImagesPerSec float64  `json:"train_images_per_sec,omitempty"` // this start's; absent when it trained nothing (a resume that only ended the run)
	TrainSeconds      float64  `json:"train_seconds"`
	Confusion         [][]int  `json:"confusion,omitempty"`
	WorldSize         int      `json:"world_size,omitempty"` // ranks that trained it, when more than one
	// Precision is the one the run ended in, its test pass's: a resume may
	// change it, and config.yaml keeps the first (absent from older runs).
	Precision string `json:"precision,omitempty"`
	// SkippedFiles counts and names the bad image files an image folder's
	// load left out (absent when none).
	SkippedFiles *data.Skipped `json:"skipped_files,omitempty"`
}

// EvalResult holds a model's figures on one data set.
type EvalResult struct {
	Loss      float64 `json:"loss"`
	Accuracy  float64 `json:"accuracy,omitempty"`
	Top5      float64 `json:"top5,omitempty"`
	RMSE      float64 `json:"rmse,omitempty"`
	MAE       float64 `json:"mae,omitempty"`
	R2        float64 `json:"r2,omitempty"`
	Confusion [][]int `json:"confusion,omitempty"`
	Count     int     `json:"count"`
}

// Trainer runs Fit, Evaluate and Predict for a model: the Go counterpart of
// Keras's Model.fit. Config says how; Run, when set, receives the run
// directory's files; Progress, when set (a terminal), shows a progress bar.
//
// A Trainer, like its model, is used by one goroutine at a time: its layers
// keep their outputs between passes, so two Predicts at once, or a Predict
// beside a Fit, read each other's buffers (wrong outputs, no error). Serve
// concurrent requests from one goroutine, or give each its own Trainer and
// model (trainers in separate goroutines train independently, bit for bit
// as they would alone); a Fit's callbacks may call its own trainer.
type Trainer struct {
	// Config is read by each Fit (epochs, batch, schedule, validation,
	// early stopping); the optimiser, clipping, label smoothing and
	// micro-batching are fixed by NewTrainer: change those through a new
	// trainer, not here.
	Config    Config
	Model     layers.Layer
	Log       zerolog.Logger
	Run       *RunDir
	Progress  io.Writer
	Callbacks Callbacks
	// World is the ranks that train together (data parallel, world.go);
	// nil is this process alone.
	World World
	// BucketBytes is the size of the gradient buckets whose all-reduce
	// starts during the backward pass (gradbuckets.go): 0 is
	// DefaultBucketBytes, negative one all-reduce after the pass.
	BucketBytes int

	opt        Optimizer
	classifier *Classifier
	regressor  *Regressor
	params     []*layers.Param
	vis        *visualState      // pictures and TensorBoard events (visuals.go)
	grads      GradReducer       // the flat gradient buffer the ranks reduce (gradreduce.go)
	gradScale  float64           // this rank's share of the step's global batch
	dropouts   []*layers.Dropout // told each step where the rank's shard lies (world.go)

	device     engine.Device // device.go
	precision  engine.Precision
	xDev, yDev *engine.Tensor    // training batches on the device (reused)
	graphStats engine.GraphStats // what the last Fit's step graph did (stepgraph.go)
	autoMicro  MicroBatchRule    // micro_batch 0's choice (microbatch.go)
	evX, ev    *engine.Tensor    // an evaluation's batch on the device, results back
	digestOf   *data.Splits      // the splits digest is of (dataDigest)
	digest     []byte            // splitsBytes(digestOf): hashed once a run, by the ranks' check and the checkpoints
}

// CheckSchedule refuses, before a run directory is made, a schedule that
// does not fit a run of c's epochs over train (a warm-up as long as the run,
// milestones past its end), as Fit would at its start.
func CheckSchedule(c Config, train *data.Dataset) error {
	if c.Batch <= 0 {
		return nil // ValidateTraining says so
	}
	nb := data.BatchesPerEpoch(train.Len(), c.Batch, c.DropLast)
	if nb == 0 {
		return settingErr("batch", c.Batch, "is more than the %d training samples, which then make no batch with drop_last", train.Len())
	}
	_, err := scheduleFor(c, nb)
	return err
}

// scheduleFor is c's learning-rate schedule over a run of nb steps an epoch.
func scheduleFor(c Config, nb int) (*Schedule, error) {
	if nb > 0 && c.Epochs > math.MaxInt32/nb {
		return nil, settingErr("epochs", c.Epochs, "at %d steps an epoch, makes a run longer than the %d steps a schedule counts", nb, math.MaxInt32)
	}
	return NewSchedule(ScheduleConfig{Kind: c.Schedule, BaseLR: c.LR, Total: nb * c.Epochs, Warmup: c.Warmup,
		StepSize: c.StepSize, Milestones: c.Milestones, Gamma: c.Gamma,
		Factor: c.PlateauFactor, Patience: c.PlateauPatience})
}

// NewTrainer prepares a trainer for model, which may be any network (not
// only one of the zoo), with configuration c (its training settings are
// validated; Model and Dataset are only names for the logs). The settings of
// the process and its files are the caller's, as kiln train applies them:
// Threads (engine.SetThreads), RunDir (OpenRunDir, then set Trainer.Run:
// without it Fit writes nothing and keeps no checkpoint), the data ones
// (data.Load) and Device (the engine's default device).
func NewTrainer(c Config, model layers.Layer) (*Trainer, error) {
	if model == nil {
		return nil, errors.New("NewTrainer: no model")
	}
	if err := c.ValidateTraining(); err != nil {
		return nil, err
	}
	if err := c.ValidateTask(); err != nil {
		return nil, err
	}
	auto, err := MicroBatchRuleFor(model, c.MicroBatch)
	if err != nil {
		return nil, err
	}
	t := &Trainer{Config: c, Model: model, Log: zerolog.Nop(), opt: newOptimizer(c), autoMicro: auto}
	if c.Regression {
		t.regressor = NewRegressor(model, t.opt)
		t.regressor.ClipNorm, t.regressor.MicroBatch, t.regressor.AutoMicro = c.ClipNorm, c.MicroBatch, auto
		t.params = t.regressor.Params()
	} else {
		t.classifier = NewClassifier(model, t.opt)
		t.classifier.Smoothing, t.classifier.ClipNorm = c.LabelSmoothing, c.ClipNorm
		t.classifier.MicroBatch, t.classifier.AutoMicro = c.MicroBatch, auto
		t.params = t.classifier.Params()
	}
	if defaultDevice != engine.CPU {
		if err := t.SetDevice(defaultDevice); err != nil {
			return nil, err
		}
	}
	p, err := engine.ParsePrecision(c.Precision)
	if err == nil {
		err = t.SetPrecision(p)
	}
	return t, err
}

// resumeKey is the configuration a resumed run must share with the run it
// continues: everything but where and how fast it runs.
// ResumeDiff names the settings of now that a resume of a run started with
// run would refuse, "name: the run's → now's" in name order; "" when it
// would take them.
func ResumeDiff(run, now Config) string { return configDiff(resumeKey(run), resumeKey(now)) }

// SettingsDiff names the fields (by JSON key) in which two values of one
// settings type differ, as ResumeDiff does; "" when they are the same.
func SettingsDiff(run, now any) string {
	a, errA := json.Marshal(run)
	b, errB := json.Marshal(now)
	if errA != nil || errB != nil {
		return "unreadable settings"
	}
	return configDiff(a, b)
}

// sameSettings refuses to resume the checkpoint at path, whose run was
// started with the resume key run, with other settings, naming them.
func (f *fitRun) sameSettings(path string, run json.RawMessage) error {
	var rc Config
	if json.Unmarshal(run, &rc) == nil {
		run = resumeKey(rc) // as this version keys it (a checkpoint's may predate a setting's leaving the key)
	}
	if d := configDiff(run, resumeKey(f.c)); d != "" {
		dir := filepath.Dir(path)
		if _, err := os.Stat(filepath.Join(dir, ConfigFile)); errors.Is(err, fs.ErrNotExist) {
			d = fmt.Sprintf("%s (%s is missing, so the flags given were the whole configuration: give the run's settings again)",
				d, filepath.Join(dir, ConfigFile))
		}
		flags := make([]string, len(ResumableSettings))
		for i, k := range ResumableSettings {
			flags[i] = "--" + strings.ReplaceAll(k, "_", "-")
		}
		return &ResumeRefusedError{fmt.Sprintf("resume: the configuration differs from the run in %s: %s (only %s may change)",
			filepath.Dir(path), d, strings.Join(flags, ", "))}
	}
	return nil
}

// ResumeRefusedError is a resume given settings other than its run's: a
// mistake in what was asked (kiln exits 2, as for a finished run's).
type ResumeRefusedError struct{ msg string }

func (e *ResumeRefusedError) Error() string { return e.msg }

// configDiff names the settings two resume keys differ in, "name: the
// run's → this one's", in name order; "" when they are the same.
func configDiff(run, now json.RawMessage) string {
	if string(run) == string(now) {
		return ""
	}
	var a, b map[string]any
	if json.Unmarshal(run, &a) != nil || json.Unmarshal(now, &b) != nil {
		return "unreadable settings"
	}
	keys := map[string]bool{}
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	var d []string
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if !reflect.DeepEqual(a[k], b[k]) {
			d = append(d, fmt.Sprintf("%s: %s → %s", k, settingText(a[k]), settingText(b[k])))
		}
	}
	return strings.Join(d, ", ")
}

// settingText is a setting's value as a flag would take it ("unset" when
// the key is absent).
func settingText(v any) string {
	switch v := v.(type) {
	case nil:
		return "unset"
	case string:
		return strconv.Quote(v)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// ResumableSettings are the settings a resume may change (resumeKey leaves
// them out): where and how fast the run goes, not what it trains.
var ResumableSettings = []string{"run_dir", "threads", "device", "data_dir", "precision", "micro_batch", "sync_bn",
	"stop_after_epoch", "no_visuals", "no_cuda_graph", "log_level", "memory_limit_mb"}

func resumeKey(c Config) json.RawMessage {
	c.DropInert(nil) // read by nothing, and kept by an older Kiln's runs
	if c.Optimizer != "sgd" {
		c.Momentum, c.Nesterov = 0, false // SGD's: the Adam family does not read them
	}
	c.RunDir, c.Threads, c.Device, c.StopAfterEpoch, c.DataDir, c.NoVisuals = "", 0, "", 0, "", false
	c.LogLevel = "" // the console's, not the run's
	c.NoCUDAGraph = false
	c.Precision = ""                 // the checkpoint holds float32 masters whatever the precision
	c.WorldSize, c.SyncBN = 0, false // issue 18: a run resumes with another number of ranks
	c.MicroBatch = 0                 // the same steps, in other pieces
	c.MemoryLimitMB = 0              // the machine's, not the run's: a resume may go to a smaller one
	b, _ := json.Marshal(c)
	return b
}

// Fit trains on s.Train, validates on s.Val (when present) and evaluates the
// chosen weights on s.Test (when present). It runs in phases, each a method
// of fitRun below: prepare, resume (from the run directory's checkpoint),
// the epochs, and the end (final weights, test pass, summary). A run
// resumed at any point, its end included, finishes as if never stopped.
func (t *Trainer) Fit(ctx context.Context, s *data.Splits) (*Summary, error) {
	f, err := t.prepareFit(s)
	if err != nil {
		return nil, err
	}
	defer f.loader.Close()
	defer f.data.Release()
	defer f.losses.Release()
	defer f.endGraph()
	if err := f.resumeShared(); err != nil {
		return nil, err
	}
	if f.pausing() {
		// Lightning's max_epochs at or below the checkpoint's: it trained
		// the epochs after it, saying nothing.
		t.Log.Warn().Int("epoch", f.epochs).Msgf("--stop-after-epoch %d: the checkpoint has already finished epoch %d, so nothing is trained; "+
			"resume with a later --stop-after-epoch, or without it, to go on", f.c.StopAfterEpoch, f.epochs)
		return f.pause(), nil
	}
	t.openVisuals(s, f.step)
	defer t.closeVisuals()
	if t.Run != nil && t.Run.Err() != nil {
		// A file that cannot be made now (a name too long, no descriptors
		// left) stopped the run at its first record: an epoch later.
		return nil, t.Run.Err()
	}
	f.logStart()
	t.Model.SetTraining(true)
	for !f.trainingDone() {
		if err := f.runEpoch(ctx); err != nil {
			return nil, err
		}
		if f.pausing() {
			return f.pause(), nil
		}
	}
	return f.finish()
}

// fitRun is one call of Fit: its settings and where the run has got to.
type fitRun struct {
	t       *Trainer
	c       Config
	s       *data.Splits
	loader  *data.Loader
	data    *DeviceData // the training set on the device, or nil
	nb      int         // batches per epoch
	sched   *Schedule
	monitor string // the early-stopping metric
	stopper *EarlyStopping
	bar     *progressbar.ProgressBar
	task    task

	epochs     int     // epochs completed
	step       int     // optimiser steps taken
	elapsed    float64 // training seconds, over every part of the run
	stopReason string  // why training ended early
	sums       epochSums
	window     stepWindow        // the steps since the last --log-every record (steplog.go)
	losses     *engine.LossLog   // the steps' losses, read in batches (lossread.go)
	graph      *engine.StepGraph // the GPU step as one launch (stepgraph.go)
	unread     []loggedStep      // the steps in losses
	read       []engine.StepLoss

	start          time.Time // of this process's part of the run
	images         int       // trained on in this part
	warnedCollapse bool      // said once per run
	// best is a copy of the best weights for RestoreBest where there is no
	// run directory to keep best.safetensors in (the Go API without one),
	// as Keras's restore_best_weights keeps them.
	best map[string]*engine.Tensor
}

// prepareFit checks the data against the model and builds the loader, the
// schedule and the early stopping.
func (t *Trainer) prepareFit(s *data.Splits) (*fitRun, error) {
	c := t.Config
	if s == nil || s.Train == nil || s.Train.Len() == 0 {
		return nil, fmt.Errorf("fit: no training data")
	}
	if t.Run != nil && t.Run.ended {
		// A second Fit would write another run over this one's files.
		return nil, fmt.Errorf("fit: the run in %s has ended: open another run directory for another run", t.Run.Path)
	}
	if t.Run != nil && !t.Run.held() {
		// Closed (its lock gone: another process may own it now), or not
		// made by OpenRunDir: writing there panicked after the first epoch.
		return nil, fmt.Errorf("fit: the run directory %s is not open: give Fit one from OpenRunDir, before its Close", t.Run.Path)
	}
	if err := checkHead(c, s.Train); err != nil {
		return nil, fmt.Errorf("fit: %w", err)
	}
	if err := checkSplitsLike(c, s); err != nil {
		return nil, fmt.Errorf("fit: %w", err)
	}
	if err := CheckAugment(c, s.Train); err != nil { // as kiln train checks it: a table's rows were zeroed
		return nil, fmt.Errorf("fit: %w", err)
	}
	if err := s.Train.CheckClasses(); err != nil {
		return nil, err
	}
	if err := CheckValidation(c, s); err != nil {
		return nil, fmt.Errorf("fit: %w", err)
	}
	if err := t.checkMemory(s.Train); err != nil {
		return nil, err
	}
	if err := t.prepareWorld(s); err != nil {
		return nil, err
	}
	w := t.world()
	loader, err := data.NewLoader(s.Train, data.LoaderOptions{BatchSize: c.Batch, Shuffle: true, DropLast: c.DropLast,
		Augment: c.Augment, Seed: c.Seed, Shard: w.Rank(), Shards: w.Size()})
	if err != nil {
		return nil, err
	}
	f := &fitRun{t: t, c: c, s: s, loader: loader, nb: loader.BatchesPerEpoch(), start: time.Now(), task: t.newTask()}
	if f.nb == 0 {
		loader.Close()
		return nil, fmt.Errorf("fit: %d training samples make no batch of %d with drop-last", s.Train.Len(), c.Batch)
	}
	f.sched, err = scheduleFor(c, f.nb)
	if err != nil {
		loader.Close()
		return nil, err
	}
	f.monitor = c.EarlyStop
	if f.monitor == "" && s.Val != nil {
		f.monitor = "val_loss"
	}
	if f.monitor != "" {
		f.stopper = &EarlyStopping{Metric: f.monitor}
		if c.EarlyStop != "" {
			f.stopper.Patience, f.stopper.MinDelta, f.stopper.Target = c.Patience, c.MinDelta, c.Target
		}
	}
	f.data = t.KeepOnDevice(s.Train)
	f.newLossLog()
	f.newStepGraph()
	return f, nil
}

// resume restores the model, the optimiser and where the run had got to
// from the run directory's checkpoint, when it is resuming one.
func (f *fitRun) resume() error {
	t := f.t
	if t.Run == nil || !t.Run.Resuming() {
		if t.Run != nil && t.Run.Restarted() {
			t.Log.Warn().Msg("--resume: the run was stopped before its first checkpoint; starting from step 0")
		}
		return nil
	}
	if short := t.Run.ShortFiles(); len(short) > 0 {
		t.Log.Warn().Strs("files", short).Msg("--resume: these files are shorter than at the checkpoint " +
			"(a power cut or an edit): their records from before it are lost; the run goes on")
	}
	if err := f.resumeFrom(t.Run.File(CheckpointFile)); err != nil {
		return err
	}
	return t.Run.restoreConfig(f.c)
}

// resumeFrom restores the run from the checkpoint at path. The settings
// are compared first, from the checkpoint's header, so that another
// --model is named as such, not as a weight of the wrong shape.
func (f *fitRun) resumeFrom(path string) error {
	t := f.t
	if meta, err := safetensors.ReadMetadata(path); err == nil { // else LoadCheckpoint says what is wrong
		if st, err := parseRunState(path, meta); err == nil {
			if err := f.sameSettings(path, st.Config); err != nil {
				return err
			}
		}
	}
	st, err := LoadCheckpoint(path, t.Model, t.opt, t.params)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	if err := f.sameSettings(path, st.Config); err != nil {
		return err
	}
	if st.Data != "" && st.Data != f.dataDigest() { // checkpoints from before the digest have none
		why := "its files changed since the checkpoint"
		if f.s.Train.Name == "csv" && f.s.Train.Task == data.Regression {
			why += ", or the Kiln that wrote it read them otherwise: a CSV regression's targets since 2026-12-07"
		}
		return fmt.Errorf("resume: the data set is not the one the run in %s trained on (%s): "+
			"a resume must see the same samples and labels; put the data back, or train again without --resume", filepath.Dir(path), why)
	}
	if err := st.check(f.c.Epochs, f.nb); err != nil {
		return fmt.Errorf("resume: %s: %w", path, err)
	}
	f.epochs, f.step, f.elapsed, f.stopReason, f.sums = st.Epoch, st.Step, st.Elapsed, st.StopReason, st.Train
	if st.Schedule != nil {
		f.sched.PlateauScale, f.sched.PlateauBest, f.sched.PlateauBad, f.sched.PlateauSeen =
			st.Schedule.PlateauScale, st.Schedule.PlateauBest, st.Schedule.PlateauBad, st.Schedule.PlateauSeen
	}
	if st.EarlyStop != nil && f.stopper != nil {
		e := st.EarlyStop
		f.stopper.Best, f.stopper.BestStep, f.stopper.BestEpoch, f.stopper.Bad, f.stopper.Seen = e.Best, e.BestStep, e.BestEpoch, e.Bad, e.Seen
	}
	if err := f.checkBestWeights(); err != nil {
		return err
	}
	if now := t.machineOf(); st.Machine != "" && st.Machine != now {
		t.Log.Warn().Str("was", st.Machine).Str("now", now).Msgf("the checkpoint's steps ran on %s, this resume runs on %s: "+
			"the run goes on, in float32's other last bits (not byte for byte an uninterrupted run's)", st.Machine, now)
	}
	t.Log.Info().Int("epoch", f.epochs+1).Int("step", f.step).Msg("resumed from checkpoint") // the epoch it goes on in
	if t.Run != nil && len(t.Run.ShortFiles()) > 0 {
		// The same checkpoint, with the sizes the files were cut to: a
		// kill before the next one would cut them back to the old sizes,
		// past lines written since, and those lines would come twice. Its
		// steps ran where they ran, not here. Rank 0's: the others resume
		// from a copy, without a run directory.
		return f.checkpointOf(st.Machine)
	}
	return nil
}

// checkBestWeights refuses, at the resume, a run that is to end on its best
// weights when best.safetensors cannot be read: it ended on the last ones
// saying nothing (the file missing) or failed after training every epoch
// left (the file cut short).
func (f *fitRun) checkBestWeights() error {
	if !f.c.RestoreBest || f.stopper == nil || !f.stopper.Seen || f.t.Run == nil {
		return nil
	}
	if _, _, err := safetensors.ReadFile(f.t.Run.File(BestWeights)); err != nil {
		return &DamagedRunError{fmt.Errorf("resume: --restore-best ends this run on its best weights (epoch %d), but %w",
			f.stopper.BestEpoch, err)}
	}
	return nil
}

func (f *fitRun) logStart() {
	t, c, s := f.t, f.c, f.s
	ev := t.Log.Info().Str("model", c.Model).Str("dataset", s.Train.Name).Int("params", layers.CountParams(t.Model)).
		Int("train", s.Train.Len()).Int("val", lenOf(s.Val)).Int("test", lenOf(s.Test)).
		Int("batches_per_epoch", f.nb).Int("epochs", c.Epochs).Int("total_steps", f.nb*c.Epochs).
		Str("schedule", f.sched.Config().Kind).Float64("lr", c.LR).Str("optimizer", c.Optimizer).
		Int("threads", engine.Threads()).Stringer("precision", t.precision)
	if n := t.microBatchFor(c.Batch / t.world().Size()); n > 0 {
		ev = ev.Int("micro_batch", n) // a rank's batch in pieces of n
	}
	ev.Msg("training")
	if t.Progress != nil && !f.trainingDone() {
		// Counted in images, so the rate it shows is images/s.
		f.bar = progressbar.NewOptions(f.loader.SamplesPerEpoch()*c.Epochs, progressbar.OptionSetWriter(t.Progress),
			progressbar.OptionShowIts(), progressbar.OptionSetItsString("img"),
			progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetWidth(30), progressbar.OptionClearOnFinish())
		_ = f.bar.Set(f.step * c.Batch)
	}
}

func (f *fitRun) trainingDone() bool { return f.epochs >= f.c.Epochs || f.stopReason != "" }

// runEpoch trains the next epoch (or what is left of it), validating every
// ValEvery steps, and ends it.
func (f *fitRun) runEpoch(ctx context.Context) error {
	epoch := f.epochs
	skip := f.step - epoch*f.nb
	if skip == 0 {
		f.sums = epochSums{}
	}
	tEpoch := time.Now()
	f.window.clock = tEpoch
	for b := range f.loader.Batches(epoch, skip) {
		if f.t.stopping(ctx) {
			f.elapsed += time.Since(tEpoch).Seconds()
			return f.interrupt()
		}
		if err := f.trainStep(b); err != nil {
			return err
		}
		if err := f.logStep(f.elapsed + time.Since(tEpoch).Seconds()); err != nil {
			return err
		}
		if f.c.ValEvery > 0 && f.step%f.c.ValEvery == 0 && f.step%f.nb != 0 {
			f.elapsed += time.Since(tEpoch).Seconds()
			tEpoch = time.Now()
			if err := f.validate(float64(epoch) + float64(f.step-epoch*f.nb)/float64(f.nb)); err != nil {
				return err
			}
			if f.stopReason != "" {
				break
			}
		}
		f.window.clock = time.Now() // the next step's time starts here
	}
	f.elapsed += time.Since(tEpoch).Seconds()
	return f.endEpoch()
}

// trainStep takes one optimiser step on batch b; its loss is read later
// (readLosses).
func (f *fitRun) trainStep(b *data.Batch) error {
	t := f.t
	if err := f.graph.Step(func() error { return t.TrainOnBatchLogged(f.data, b, f.sched.LR(f.step), f.losses) }); err != nil {
		return t.stepError(err, f.epochs, f.step)
	}
	if b.Size() > 0 {
		if err := f.logged(f.step, b.Size()); err != nil {
			return err
		}
	}
	f.step++
	n := max(b.Total, b.Size()) // every rank's images
	f.images += n
	f.window.add(n)
	if f.bar != nil {
		_ = f.bar.Add(n)
	}
	return nil
}

// interrupt ends a run stopped by its context (Ctrl-C) with a checkpoint of
// where it got to.
func (f *fitRun) interrupt() error {
	if f.bar != nil {
		_ = f.bar.Clear() // the line below went on after the bar's
	}
	if err := f.readLosses(); err != nil {
		return err
	}
	if err := f.t.reduceSums(&f.sums); err != nil {
		return err
	}
	if err := f.checkpoint(); err != nil {
		return err
	}
	msg := "interrupted: checkpoint written"
	if f.t.Run == nil {
		msg = "interrupted" // a rank other than 0, or a run without a directory
	}
	// epoch as the other lines give it: the one it was in, counted from 1
	// (f.epochs counts the finished ones: it said "epoch=0" mid-epoch 1).
	f.t.Log.Warn().Int("epoch", f.epochs+1).Int("step", f.step).Msg(msg)
	if f.t.Run == nil {
		return errInterruptedNoRun{}
	}
	return ErrInterrupted
}

// errInterruptedNoRun is ErrInterrupted where there is no run directory,
// so no checkpoint to resume from.
type errInterruptedNoRun struct{}

func (errInterruptedNoRun) Error() string {
	return "training interrupted; no run directory, so no checkpoint"
}
func (errInterruptedNoRun) Is(target error) bool { return target == ErrInterrupted }

// endEpoch records the epoch's training figures, validates, observes early
// stopping and writes the checkpoint and the last weights.
func (f *fitRun) endEpoch() error {
	t := f.t
	if err := f.readLosses(); err != nil {
		return err
	}
	f.epochs++
	if err := t.reduceSums(&f.sums); err != nil {
		return err
	}
	tr := f.trainRecord()
	if err := f.record(tr); err != nil {
		return err
	}
	if f.stopReason == "" {
		if err := f.validate(float64(f.epochs)); err != nil {
			return err
		}
	}
	if f.stopper != nil && f.monitor == "train_loss" && f.stopReason == "" {
		improved, why := f.stopper.Observe(tr.Loss, f.epochs, f.step)
		if improved {
			if err := f.saveWeights(BestWeights, map[string]string{"model": f.c.Model}); err != nil {
				return err
			}
		}
		f.stopReason = why
	}
	if cb := t.Callbacks.OnEpochEnd; cb != nil && cb(tr) && f.stopReason == "" && f.epochs < f.c.Epochs {
		f.stopReason = "stopped by a callback" // after the last epoch it stops nothing
	}
	if err := f.checkpoint(); err != nil {
		return err
	}
	return f.saveWeights(LastWeights, map[string]string{"model": f.c.Model})
}

// trainRecord is the metrics record of the epoch just ended, logged.
func (f *fitRun) trainRecord() MetricsRecord {
	ips := float64(f.images) / time.Since(f.start).Seconds()
	tr := MetricsRecord{Step: f.step, Epoch: float64(f.epochs), Split: "train", LR: f.sched.LR(f.step - 1), Wall: f.elapsed, ImagesPS: ips}
	tr.Loss = f.sums.LossSum / float64(max(f.sums.Count, 1))
	ev := f.t.Log.Info().Int("epoch", f.epochs).Int("step", f.step).Float64("train_loss", tr.Loss)
	ev = f.task.trainFigures(f.sums, &tr, ev)
	ev.Float64("lr", tr.LR).Float64("images_per_sec", math.Round(ips)).Msg("epoch done")
	return tr
}

// validate evaluates the validation set, records it, and lets the schedule,
// early stopping and the callback see it.
func (f *fitRun) validate(epoch float64) error {
	t, s := f.t, f.s
	if s.Val == nil {
		return nil
	}
	if err := f.readLosses(); err != nil { // a NaN stops the run before any best weights
		return err
	}
	if f.bar != nil {
		_ = f.bar.Clear()
	}
	r, err := t.Evaluate(s.Val)
	if err != nil {
		return err
	}
	rec := MetricsRecord{Step: f.step, Epoch: epoch, Split: "val", Loss: r.Loss, LR: f.sched.LR(f.step - 1), Wall: f.elapsed}
	ev := t.Log.Info().Int("step", f.step).Float64("epoch", round3(epoch)).Float64("val_loss", r.Loss)
	f.task.describe(r, "val", false, &rec, ev).Msg("validation")
	if r.Confusion != nil && !f.warnedCollapse {
		f.warnedCollapse = t.warnIfCollapsed("validation", r.Confusion, s.Val.Classes, f.step)
	}
	if err := f.record(rec); err != nil {
		return err
	}
	t.visualValidation(s.Val, f.step, epoch, r)
	if t.Run != nil && t.Run.Err() != nil {
		return t.Run.Err() // a picture that could not be written (a full disk) stops the run here, not steps later
	}
	return f.observe(rec, f.task.monitored(r, f.monitor), epoch)
}

// observe hands a validation to the schedule, early stopping (which may save
// the best weights) and the callback, and notes whether the run should stop.
func (f *fitRun) observe(rec MetricsRecord, value, epoch float64) error {
	f.sched.Observe(rec.Loss)
	if f.stopper != nil && f.monitor != "train_loss" {
		improved, why := f.stopper.Observe(value, int(math.Ceil(epoch)), f.step)
		if improved {
			if err := f.saveWeights(BestWeights, map[string]string{"model": f.c.Model, "step": fmt.Sprint(f.step)}); err != nil {
				return err
			}
		}
		if why != "" {
			f.stopReason = why
		}
	}
	if cb := f.t.Callbacks.OnValidation; cb != nil && cb(rec) && f.stopReason == "" {
		f.stopReason = "stopped by a callback"
	}
	return nil
}

// record writes a metrics record to the event file and metrics.jsonl. A
// failed write stops the run: its checkpoint is kept.
func (f *fitRun) record(r MetricsRecord) error {
	t := f.t
	t.visualRecord(r)
	if t.Run == nil {
		return nil
	}
	if err := t.Run.Record(r); err != nil {
		return err
	}
	return t.Run.Err()
}

// checkpoint writes the resumable state, with the sizes of the appended
// files, unless an earlier write failed.
func (f *fitRun) checkpoint() error { return f.checkpointOf(f.t.machineOf()) }

// checkpointOf is checkpoint, saying that the steps so far ran on machine.
func (f *fitRun) checkpointOf(machine string) error {
	t := f.t
	if t.Run == nil {
		return nil
	}
	if err := f.finiteWeights(); err != nil {
		return err
	}
	if err := t.Run.Err(); err != nil {
		return err
	}
	if err := t.syncEvents(); err != nil {
		return err
	}
	files, err := t.Run.appendedSizes()
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return SaveCheckpoint(t.Run.File(CheckpointFile), t.Model, t.opt, t.params, RunState{
		Epoch: f.epochs, Step: f.step, Schedule: f.sched, EarlyStop: f.stopper,
		Config: resumeKey(f.c), Elapsed: f.elapsed, StopReason: f.stopReason, Train: f.sums, Files: files,
		Data: f.dataDigest(), Machine: machine,
	})
}

// machineOf names what a step's bits depend on besides the run's settings:
// the architecture, and the device, with the ISA level and threads on the
// CPU.
func (t *Trainer) machineOf() string {
	if t.device != engine.CPU {
		return fmt.Sprintf("%s %v", runtime.GOARCH, t.device)
	}
	return fmt.Sprintf("%s cpu at ISA level %s, %d threads", runtime.GOARCH, engine.CPUISA(), engine.Threads())
}

// dataDigest is the hex SHA-256 of the run's data set (Trainer.dataDigest).
func (f *fitRun) dataDigest() string { return hex.EncodeToString(f.t.dataDigest(f.s)) }

// dataDigest is splitsBytes(s), computed once for the splits a run trains on.
func (t *Trainer) dataDigest(s *data.Splits) []byte {
	if t.digestOf != s {
		t.digestOf, t.digest = s, splitsBytes(s)
	}
	return t.digest
}

func (f *fitRun) saveWeights(name string, meta map[string]string) error {
	if f.t.Run == nil {
		if name == BestWeights && f.c.RestoreBest {
			return f.keepBest()
		}
		return nil
	}
	return layers.SaveWeights(f.t.Model, f.t.Run.File(name), meta)
}

// keepBest copies the weights into f.best, in host memory (no device buffer
// to free), reusing the copies of the last improvement.
func (f *fitRun) keepBest() error {
	if f.best == nil {
		f.best = map[string]*engine.Tensor{}
	}
	for k, v := range layers.State(f.t.Model) {
		if f.best[k] == nil {
			f.best[k] = engine.New(v.DType(), v.Shape()...)
		}
		if err := f.best[k].CopyFrom(v); err != nil {
			return fmt.Errorf("keeping the best weights: %s: %w", k, err)
		}
	}
	return nil
}

// pausing reports whether the run ends here as --stop-after-epoch asks.
func (f *fitRun) pausing() bool {
	return f.c.StopAfterEpoch > 0 && f.epochs >= f.c.StopAfterEpoch && !f.trainingDone()
}

func (f *fitRun) pause() *Summary {
	if f.bar != nil {
		_ = f.bar.Clear()
	}
	f.t.Log.Info().Int("epoch", f.epochs).Msg("stopping after this epoch as asked; resume with --resume")
	return &Summary{Model: f.c.Model, Dataset: f.s.Train.Name, Params: layers.CountParams(f.t.Model),
		EpochsRun: f.epochs, Steps: f.step, TrainSeconds: f.elapsed, StopReason: "stop-after-epoch"}
}

// finish ends a run whose training is done: the final weights, the best ones
// restored when asked, the test pass, the pictures and summary.json, which
// is written last.
func (f *fitRun) finish() (*Summary, error) {
	t, c := f.t, f.c
	if f.bar != nil {
		_ = f.bar.Finish()
	}
	// Written at each epoch's end too; again here for a run resumed after
	// its last checkpoint, whose last weights may predate it.
	if err := f.saveWeights(LastWeights, map[string]string{"model": c.Model}); err != nil {
		return nil, err
	}
	sum := f.summary()
	if c.RestoreBest && t.Run != nil {
		// Best weights that were saved and are gone since are an error,
		// not the last weights said to be the best.
		if _, err := os.Stat(t.Run.File(BestWeights)); err == nil || f.stopper != nil && f.stopper.Seen {
			if _, err := layers.LoadWeights(t.Model, t.Run.File(BestWeights)); err != nil {
				return nil, err
			}
			sum.Weights = BestWeights
			t.Log.Info().Int("best_epoch", sum.BestEpoch).Msg("restored the best weights")
		}
	} else if c.RestoreBest && f.best != nil {
		if err := layers.LoadState(t.Model, f.best); err != nil {
			return nil, err
		}
		sum.Weights = BestWeights // the best weights, kept in memory
		t.Log.Info().Int("best_epoch", sum.BestEpoch).Msg("restored the best weights")
	}
	if c.RestoreBest && t.distributed() {
		// Rank 0 alone has the run directory and so the best weights.
		if err := t.broadcastState(); err != nil {
			return nil, err
		}
	}
	if err := f.test(sum); err != nil {
		return nil, err
	}
	t.finishVisuals(f.s, f.step, sum.Weights == BestWeights)
	if t.Run == nil {
		return sum, nil
	}
	if err := t.Run.Err(); err != nil {
		return nil, err
	}
	if err := t.Run.syncAppended(); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	if err := t.Run.WriteJSON(SummaryFile, sum); err != nil {
		return nil, err
	}
	t.Run.ended = true
	return sum, nil
}

// summary is the run's summary before the test pass.
func (f *fitRun) summary() *Summary {
	c := f.c
	sum := &Summary{Model: c.Model, Dataset: f.s.Train.Name, Params: layers.CountParams(f.t.Model),
		EpochsRun: f.epochs, Steps: f.step, TrainSeconds: f.elapsed, Weights: LastWeights,
		TrainImagesPerSec: float64(f.images) / math.Max(time.Since(f.start).Seconds(), 1e-9),
		StoppedEarly:      f.stopReason != "", StopReason: f.stopReason}
	sum.SkippedFiles = f.s.Skipped
	if p, err := engine.ParsePrecision(c.Precision); err == nil {
		sum.Precision = p.String()
	}
	if w := f.t.world().Size(); w > 1 {
		sum.WorldSize = w
	}
	if f.stopReason == "" {
		sum.StopReason = "completed " + Epochs(c.Epochs)
	} else {
		ev := f.t.Log.Info().Str("reason", f.stopReason)
		if f.stopper != nil {
			ev = ev.Str("metric", f.stopper.Metric).Float64("best", f.stopper.Best).Int("best_epoch", f.stopper.BestEpoch).Int("best_step", f.stopper.BestStep)
		}
		ev.Msg("early stop")
	}
	if f.stopper != nil {
		sum.BestEpoch, sum.BestStep = f.stopper.BestEpoch, f.stopper.BestStep
	}
	return sum
}

// test evaluates the final weights on the test set, when there is one.
func (f *fitRun) test(sum *Summary) error {
	t, s := f.t, f.s
	if s.Test == nil {
		return nil
	}
	r, err := t.Evaluate(s.Test)
	if err != nil {
		return err
	}
	sum.TestLoss = &r.Loss
	top5 := s.Test.NumClasses() > 5
	f.task.summarize(r, sum, top5)
	rec := MetricsRecord{Step: f.step, Epoch: float64(f.epochs), Split: "test", Loss: r.Loss, Wall: f.elapsed}
	ev := t.Log.Info().Float64("test_loss", r.Loss)
	f.task.describe(r, "test", top5, &rec, ev).Str("weights", sum.Weights).Msg("test")
	if err := f.record(rec); err != nil {
		return err
	}
	switch {
	case len(r.Confusion) > maxConfusionLogged:
		t.Log.Info().Int("classes", len(r.Confusion)).Msg("confusion matrix: too many classes to print; summary.json holds it")
	case r.Confusion != nil:
		t.Log.Info().Msg("confusion matrix (rows: true class, columns: predicted)\n" + formatConfusion(r.Confusion, s.Test.Classes))
	}
	if r.Confusion != nil {
		t.warnIfCollapsed("test", r.Confusion, s.Test.Classes, f.step)
	}
	return nil
}

// stepError is the error of the step after the first `step` steps of epoch
// (both counted from 0), which names it counted from 1: metrics.jsonl's
// record of that step would carry its number (it said the step before).
func (t *Trainer) stepError(err error, epoch, step int) error {
	kept := t.keptCheckpoint()
	t.Log.Error().Err(err).Int("epoch", epoch+1).Int("step", step+1).Msg("training step failed; " + kept)
	var diverged lossNotFinite
	if errors.As(err, &diverged) {
		// Not for running out of memory, which says what to try.
		kept += "; " + t.divergenceAdvice()
	}
	return fmt.Errorf("epoch %d, step %d: %w (%s)", epoch+1, step+1, err, kept)
}

// divergenceAdvice is what to change for a run whose loss or weights went
// beyond float32: the settings that shrink a step, less those already set
// (a large weight decay named: the recipes' small ones are not the cause). A
// resume takes the run's own settings, so it would diverge at the same step.
func (t *Trainer) divergenceAdvice() string {
	advice := "a lower --lr"
	if t.Config.WeightDecay >= 0.1 {
		advice += ", a lower --weight-decay"
	}
	if t.Config.ClipNorm == 0 {
		advice += " or a --clip-norm"
	} else {
		advice += " or a lower --clip-norm"
	}
	if t.Run != nil {
		if _, err := os.Stat(t.Run.File(CheckpointFile)); err == nil {
			return "a resume repeats the same steps: train a new run with " + advice
		}
	}
	return "train again with " + advice
}

// hostSumSquares is t's sum of squares in float64 on the host: NaN when a
// value is NaN, +Inf when one is infinite, finite otherwise.
func hostSumSquares(t *engine.Tensor) (float64, error) {
	host, err := t.To(engine.CPU)
	if err != nil {
		return 0, err
	}
	defer host.Release()
	return engine.SumSquares(host)
}

// finiteWeights stops a run whose parameters an update made NaN or
// infinite (a learning rate or weight decay too large for float32), before
// its checkpoint and last weights replace the good ones: the loss, computed
// before the update, was still finite, and the run wrote NaN weights while
// it said the last good checkpoint was kept.
func (f *fitRun) finiteWeights() error {
	sum := 0.0
	for _, p := range f.t.params {
		ss, err := engine.SumSquares(p.Value)
		if err != nil {
			return err
		}
		if math.IsInf(ss, 1) && p.Value.Device() != engine.CPU {
			// The GPU sums squares in float32: past 1.8e19 a finite weight's
			// square is +Inf there. Look at the values themselves.
			if ss, err = hostSumSquares(p.Value); err != nil {
				return err
			}
		}
		sum += ss
	}
	if !math.IsNaN(sum) && !math.IsInf(sum, 0) {
		return nil
	}
	kept := f.t.keptCheckpoint()
	f.t.Log.Error().Int("step", f.step).Msg("the weights are not finite after this step; " + kept)
	return fmt.Errorf("after step %d the weights are not finite numbers (NaN or infinite: an update too large for float32) (%s; %s)",
		f.step, kept, f.t.divergenceAdvice())
}

// keptCheckpoint says what a failed step leaves to resume from: a run that
// fails before its first checkpoint has none, and saying "the last good
// checkpoint is kept" there sent a user looking for one.
func (t *Trainer) keptCheckpoint() string {
	if t.Run == nil && t.world().Rank() != 0 {
		return "rank 0 keeps the run's checkpoint"
	}
	if t.Run == nil {
		return "no run directory, so no checkpoint"
	}
	if _, err := os.Stat(t.Run.File(CheckpointFile)); err != nil {
		return "no checkpoint yet: the run failed before its first"
	}
	return "the last good checkpoint is kept"
}

// Evaluate runs the model in evaluation mode over ds and returns its figures.
// In a world of several ranks every rank calls it and evaluates its shard
// of ds; the figures are the whole of ds's.
func (t *Trainer) Evaluate(ds *data.Dataset) (EvalResult, error) { return t.evaluate(ds, t.world()) }

// evaluate is Evaluate shared among the ranks of w (Solo: this rank alone,
// over the whole of ds).
func (t *Trainer) evaluate(ds *data.Dataset, w World) (EvalResult, error) {
	c := t.Config
	if w.Size() > 1 {
		if err := t.broadcastBuffers(); err != nil {
			return EvalResult{}, err
		}
	}
	// Each rank evaluates its shard of every batch.
	loader, err := data.NewLoader(ds, data.LoaderOptions{BatchSize: max(c.Batch, 256) * w.Size(), Prefetch: -1,
		Shard: w.Rank(), Shards: w.Size()})
	if err != nil {
		return EvalResult{}, err
	}
	defer loader.Close()
	defer layers.Evaluating(t.Model)()
	defer engine.Drop(&t.evX) // an evaluation leaves device memory as it found it
	acc := t.newTask().newEvaluation(ds)
	for b := range loader.Batches(0, 0) {
		if b.Size() == 0 {
			continue
		}
		x, err := t.onDevice(&t.evX, b.X)
		if err != nil {
			return EvalResult{}, err
		}
		out, err := t.Model.Forward(x)
		if err != nil {
			return EvalResult{}, err
		}
		if out, err = onHost(&t.ev, out); err != nil {
			return EvalResult{}, err
		}
		t.observeEval(ds, b, out)
		if err := acc.add(out, b); err != nil {
			return EvalResult{}, err
		}
	}
	if err := acc.reduce(w); err != nil {
		return EvalResult{}, err
	}
	return acc.result(), nil
}

// checkHead refuses a data set of another task than the model's head.
func checkHead(c Config, ds *data.Dataset) error {
	head := data.Classification
	if c.Regression {
		head = data.Regression
	}
	if ds.Task != head {
		return fmt.Errorf("data set %s is %v but the model has a %v head", ds.Name, ds.Task, head)
	}
	return nil
}

// checkSplitsLike refuses, before the first step, validation and test
// splits the model cannot take: another task, sample shape or labels past
// the training split's classes. They failed after the whole run (the test
// pass) or the first epoch, and a resume without them was refused as
// other data.
func checkSplitsLike(c Config, s *data.Splits) error {
	tr := s.Train
	for _, sp := range []struct {
		name string
		d    *data.Dataset
	}{{"validation", s.Val}, {"test", s.Test}} {
		d := sp.d
		if d == nil {
			continue
		}
		if err := checkHead(c, d); err != nil {
			return fmt.Errorf("the %s split: %w", sp.name, err)
		}
		if d.Channels != tr.Channels || d.Height != tr.Height || d.Width != tr.Width {
			return fmt.Errorf("the %s split's samples are %d×%d×%d (C×H×W), the training split's %d×%d×%d",
				sp.name, d.Channels, d.Height, d.Width, tr.Channels, tr.Height, tr.Width)
		}
		if d.Task == data.Classification {
			for i, l := range d.Labels {
				if l < 0 || int(l) >= tr.NumClasses() {
					return fmt.Errorf("the %s split's sample %d has label %d; the training split has %d classes", sp.name, i, l, tr.NumClasses())
				}
			}
		}
	}
	return nil
}

// finiteLoss refuses a non-finite loss: the model's outputs hold NaN or
// infinities (diverged or damaged weights), and no accuracy computed from
// them means anything.
func finiteLoss(ds *data.Dataset, loss float64) error {
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return fmt.Errorf("evaluating on %s: the loss is %v: the model's outputs are not finite numbers (NaN or infinite weights?)", ds.Name, loss)
	}
	return nil
}

// collapsedClass reports the one class a classifier predicted for every
// sample of a confusion matrix ([true][predicted]) that holds at least two
// true classes: a run that has collapsed (dead ReLUs after too large a
// learning rate, say) and now scores the share of that class.
func collapsedClass(conf [][]int) (int, bool) {
	predicted, trueClasses := -1, 0
	for _, row := range conf {
		n := 0
		for p, v := range row {
			if v == 0 {
				continue
			}
			n += v
			if predicted != -1 && p != predicted {
				return 0, false
			}
			predicted = p
		}
		if n > 0 {
			trueClasses++
		}
	}
	return predicted, predicted >= 0 && trueClasses >= 2
}

// warnIfCollapsed logs a warning when every prediction of split fell in one
// class after steps training steps, and reports whether it did. A run of
// fewer than fewStepsToJudge steps is told it may just not have learned
// yet: LeNet on 1% of MNIST for one epoch (9 steps) predicts one class at
// a loss of ln 10, untrained, not collapsed.
func (t *Trainer) warnIfCollapsed(split string, conf [][]int, names []string, steps int) bool {
	k, ok := collapsedClass(conf)
	if !ok {
		return false
	}
	name := fmt.Sprint(k)
	if k < len(names) {
		name = names[k]
	}
	ev := t.Log.Warn().Str("split", split).Str("class", name).Int("steps", steps)
	if steps < fewStepsToJudge {
		ev.Msgf("the model predicts class %s for every %s sample after only %d training steps: it may not have "+
			"learned yet; train longer (more --epochs, a larger --subset). If that does not help, training has "+
			"collapsed: try a lower --lr, or another --seed", name, split, steps)
		return true
	}
	ev.Msgf("the model predicts class %s for every %s sample: training has collapsed (dead ReLUs or diverged weights); "+
		"try a lower --lr, or another --seed", name, split)
	return true
}

// fewStepsToJudge is how many training steps a collapse warning takes
// before it blames the run rather than its length.
const fewStepsToJudge = 100

func lenOf(d *data.Dataset) int {
	if d == nil {
		return 0
	}
	return d.Len()
}

// ptr is v for a record or summary's JSON, which has no NaN or ±Inf:
// those are left out (nil).
func ptr(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// maxConfusionLogged is the most classes whose confusion matrix the log
// prints: a row of a hundred columns is already past any console's width.
const maxConfusionLogged = 100

func formatConfusion(m [][]int, names []string) string {
	var s strings.Builder
	for i, row := range m {
		name := fmt.Sprint(i)
		if i < len(names) {
			name = names[i]
		}
		if len(name) > 12 {
			name = name[:12]
		}
		fmt.Fprintf(&s, "%12s", name)
		for _, v := range row {
			fmt.Fprintf(&s, " %5d", v)
		}
		s.WriteByte('\n')
	}
	return s.String()
}

// Epochs is "1 epoch" or "n epochs".
func Epochs(n int) string {
	if n == 1 {
		return "1 epoch"
	}
	return fmt.Sprintf("%d epochs", n)
}
