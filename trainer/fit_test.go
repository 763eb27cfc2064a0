package trainer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer/data"
	"github.com/rs/zerolog"
)

// blobs is a small, learnable synthetic problem: 4 classes, each a noisy
// pattern on a 1×8×8 image.
func blobs(t *testing.T, n int, seed uint64) *data.Dataset {
	rng := rand.New(rand.NewPCG(seed, 3))
	x := engine.New(engine.Float32, n, 1, 8, 8)
	labels := make([]int32, n)
	for i := 0; i < n; i++ {
		c := rng.IntN(4)
		labels[i] = int32(c)
		img := x.Float32()[i*64 : (i+1)*64]
		for p := range img {
			v := rng.NormFloat64() * 0.5
			if (p/16 == c) || (p%8 == 2*c) {
				v += 1.5
			}
			img[p] = float32(v)
		}
	}
	ds, err := data.NewClassification("blobs", x, labels, []string{"a", "b", "c", "d"})
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func blobSplits(t *testing.T) *data.Splits {
	train, val := blobs(t, 512, 1), blobs(t, 128, 2)
	return &data.Splits{Train: train, Val: val, Test: blobs(t, 256, 3)}
}

func newBlobTrainer(t *testing.T, c Config, dir string, resume bool) *Trainer {
	t.Helper()
	model, err := layers.Build(c.Model, layers.Spec{Channels: 1, Height: 8, Width: 8, Classes: 4, Seed: c.Seed, Hidden: 32})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(c, model)
	if err != nil {
		t.Fatal(err)
	}
	if dir != "" {
		// The run before this one in dir has ended, as its process would
		// have: its lock goes.
		if prev, ok := openRuns.LoadAndDelete(dir); ok {
			prev.(*RunDir).Close()
		}
		run, err := OpenRunDir(dir, resume)
		if err != nil {
			t.Fatal(err)
		}
		openRuns.Store(dir, run)
		t.Cleanup(func() { run.Close() })
		tr.Run = run
	}
	return tr
}

// openRuns holds the last run directory newBlobTrainer opened in each
// directory.
var openRuns sync.Map

func blobConfig() Config {
	c := DefaultConfig()
	c.Model, c.Dataset, c.Epochs, c.Batch, c.LR, c.Schedule = "mlp", "blobs", 4, 32, 0.05, "cosine"
	return c
}

func TestFitLearnsAndWritesTheRunDirectory(t *testing.T) {
	dir := t.TempDir()
	c := blobConfig()
	c.ValEvery = 5
	tr := newBlobTrainer(t, c, dir, false)
	sum, err := tr.Fit(context.Background(), blobSplits(t))
	if err != nil {
		t.Fatal(err)
	}
	if sum.TestAccuracy == nil || *sum.TestAccuracy < 0.9 {
		t.Fatalf("test accuracy %v", sum.TestAccuracy)
	}
	for _, f := range []string{MetricsFile, LogFile, LastWeights, BestWeights, CheckpointFile, SummaryFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s: %v", f, err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, MetricsFile))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	// 16 batches per epoch, validation every 5 steps plus each epoch end.
	if len(lines) < 4*4+1 {
		t.Fatalf("%d metrics lines", len(lines))
	}
	var rec MetricsRecord
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil || rec.Split != "val" || rec.Step != 5 {
		t.Fatalf("first record %q: %v", lines[0], err)
	}
	var s map[string]any
	b, _ = os.ReadFile(filepath.Join(dir, SummaryFile))
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"test_accuracy", "test_loss", "weights", "epochs_run", "best_epoch", "stopped_early", "stop_reason", "train_images_per_sec"} {
		if _, ok := s[k]; !ok {
			t.Errorf("summary.json lacks %s", k)
		}
	}
	// A second run into the same directory is refused: nothing is overwritten.
	tr.Run.Close()
	if _, err := OpenRunDir(dir, false); err == nil {
		t.Fatal("run directory reused without --resume")
	}
}

func TestStopAfterEpochAndResumeMatchAStraightRun(t *testing.T) {
	c := blobConfig()
	c.Model = "cnn" // batch norm and dropout make the state non-trivial
	splits := blobSplits(t)
	straight := newBlobTrainer(t, c, t.TempDir(), false)
	if _, err := straight.Fit(context.Background(), splits); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c1 := c
	c1.StopAfterEpoch = 1
	first := newBlobTrainer(t, c1, dir, false)
	sum, err := first.Fit(context.Background(), splits)
	if err != nil || sum.EpochsRun != 1 {
		t.Fatalf("first part: %v, %+v", err, sum)
	}
	second := newBlobTrainer(t, c, dir, true)
	if _, err := second.Fit(context.Background(), splits); err != nil {
		t.Fatal(err)
	}
	a, b := layers.FullState(straight.Model), layers.FullState(second.Model)
	for name, v := range a {
		for i := 0; i < v.Len(); i++ {
			if v.At(i) != b[name].At(i) {
				t.Fatalf("%s[%d]: straight %v, resumed %v", name, i, v.At(i), b[name].At(i))
			}
		}
	}
	// Resuming with another learning rate is refused.
	c2 := c
	c2.LR = 0.1
	if _, err := newBlobTrainer(t, c2, dir, true).Fit(context.Background(), splits); err == nil {
		t.Fatal("resume with a different configuration accepted")
	}
}

func TestEarlyStoppingStopsBeforeTheEpochLimit(t *testing.T) {
	c := blobConfig()
	c.Epochs, c.EarlyStop, c.Target, c.RestoreBest = 30, "val_acc", 0.9, true
	sum, err := newBlobTrainer(t, c, t.TempDir(), false).Fit(context.Background(), blobSplits(t))
	if err != nil {
		t.Fatal(err)
	}
	if !sum.StoppedEarly || sum.EpochsRun >= 30 || !strings.Contains(sum.StopReason, "val_acc") || sum.Weights != BestWeights {
		t.Fatalf("%+v", sum)
	}
}

func TestInterruptWritesACheckpoint(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	tr := newBlobTrainer(t, blobConfig(), dir, false)
	var log bytes.Buffer
	tr.Log = zerolog.New(&log)
	tr.Callbacks.OnValidation = func(MetricsRecord) bool { cancel(); return false }
	_, err := tr.Fit(ctx, blobSplits(t))
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("got %v, want ErrInterrupted", err)
	}
	if _, err := os.Stat(filepath.Join(dir, CheckpointFile)); err != nil {
		t.Fatal(err)
	}
	// It resumes and finishes. Both lines name the epoch the run is in
	// (the second: it stopped after the first's validation), counted from 1
	// as the epoch lines are.
	again := newBlobTrainer(t, blobConfig(), dir, true)
	again.Log = zerolog.New(&log)
	if _, err := again.Fit(context.Background(), blobSplits(t)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"epoch":2,"step":16,"message":"interrupted`, `"epoch":2,"step":16,"message":"resumed`} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("no %s in the log:\n%s", want, log.String())
		}
	}
}

// The error says what is left to resume from: nothing, when the loss
// breaks before the first checkpoint; the checkpoint, after it.
func TestNaNLossStopsWithAClearError(t *testing.T) {
	c := blobConfig()
	c.LR = 1e30
	_, err := newBlobTrainer(t, c, t.TempDir(), false).Fit(context.Background(), blobSplits(t))
	if err == nil || !strings.Contains(err.Error(), "loss is") || !strings.Contains(err.Error(), "no checkpoint yet") ||
		!strings.Contains(err.Error(), "train again with a lower --lr") || strings.Contains(err.Error(), "a resume repeats") {
		t.Fatalf("got %v", err)
	}
	// Another failure (the GPU out of memory) gets no advice on the learning rate.
	if other := newBlobTrainer(t, blobConfig(), "", false).stepError(errors.New("out of GPU memory"), 0, 3); strings.Contains(other.Error(), "--lr") {
		t.Errorf("%v", other)
	}

	// After a checkpoint (resuming cannot raise the learning rate: the
	// sentence alone), and without a run directory.
	c = blobConfig()
	c.StopAfterEpoch = 1
	tr := newBlobTrainer(t, c, t.TempDir(), false)
	if _, err := tr.Fit(context.Background(), blobSplits(t)); err != nil {
		t.Fatal(err)
	}
	if got := tr.keptCheckpoint(); got != "the last good checkpoint is kept" {
		t.Errorf("after a checkpoint: %q", got)
	}
	if got := newBlobTrainer(t, c, "", false).keptCheckpoint(); !strings.Contains(got, "no run directory") {
		t.Errorf("without a run directory: %q", got)
	}
}

// A training split of one class is refused by Fit itself (the Go API and
// tune trials too), not trained to "100%".
func TestFitRefusesOneClass(t *testing.T) {
	x := engine.New(engine.Float32, 8, 1, 8, 8)
	one, err := data.NewClassification("one", x, make([]int32, 8), []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = newBlobTrainer(t, blobConfig(), "", false).Fit(context.Background(), &data.Splits{Train: one})
	if err == nil || !strings.Contains(err.Error(), "class") {
		t.Fatalf("got %v", err)
	}
}

// Validation and test splits the model cannot take are refused before the
// first step, naming the split: a test split of another shape failed after
// the whole run, and its run could not be finished.
func TestFitRefusesSplitsUnlikeTheTrainingSplit(t *testing.T) {
	for name, spoil := range map[string]func(s *data.Splits){
		"test split's samples are 1×4×16":         func(s *data.Splits) { s.Test.Height, s.Test.Width = 4, 16 },
		"validation split's sample 3 has label 9": func(s *data.Splits) { s.Val.Labels[3] = 9 },
		"the test split: data set":                func(s *data.Splits) { s.Test.Task = data.Regression },
	} {
		s := blobSplits(t)
		spoil(s)
		tr := newBlobTrainer(t, blobConfig(), "", false)
		start := time.Now()
		if _, err := tr.Fit(context.Background(), s); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
		if time.Since(start) > 5*time.Second {
			t.Errorf("%s: refused after %v: it trained first", name, time.Since(start))
		}
	}
}

// RestoreBest without a run directory (the Go API) ends with the best
// weights, kept in memory, as Keras's restore_best_weights: it kept the
// last ones and named a best.safetensors that was nowhere.
func TestRestoreBestWithoutARunDirectory(t *testing.T) {
	c := blobConfig()
	c.Epochs, c.LR, c.Schedule, c.EarlyStop, c.Patience, c.RestoreBest = 6, 2, "constant", "val_loss", 6, true
	tr := newBlobTrainer(t, c, "", false)
	var losses []float64
	tr.Callbacks.OnValidation = func(r MetricsRecord) bool { losses = append(losses, r.Loss); return false }
	s := blobSplits(t)
	sum, err := tr.Fit(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	r, err := tr.Evaluate(s.Val)
	if err != nil {
		t.Fatal(err)
	}
	best := slices.Min(losses)
	t.Logf("validation losses %v", losses)
	if sum.Weights != BestWeights || math.Abs(r.Loss-best) > 1e-6*best {
		t.Fatalf("weights %q, validation loss after Fit %v; the best was %v of %v", sum.Weights, r.Loss, best, losses)
	}
}

// Fit refuses a run directory it cannot write to as a run: one closed (it
// panicked after the first epoch, writing where another process may now
// own the lock), and one whose run a Fit has ended (a second Fit wrote
// another run over it).
func TestFitRefusesAClosedOrEndedRunDirectory(t *testing.T) {
	c := blobConfig()
	c.Epochs = 1
	dir := t.TempDir()
	tr := newBlobTrainer(t, c, dir, false)
	if _, err := tr.Fit(context.Background(), blobSplits(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Fit(context.Background(), blobSplits(t)); err == nil || !strings.Contains(err.Error(), "has ended") {
		t.Errorf("a second Fit on an ended run: %v", err)
	}
	run, err := OpenRunDir(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	run.Close()
	tr2 := newBlobTrainer(t, c, "", false)
	tr2.Run = run
	if _, err := tr2.Fit(context.Background(), blobSplits(t)); err == nil || !strings.Contains(err.Error(), "is not open") {
		t.Errorf("Fit on a closed run directory: %v", err)
	}
}

// Fit refuses augmentation of data it would destroy (1×1 "pictures", a
// table's rows), as kiln train does: through the Go API it zeroed them.
func TestFitChecksAugment(t *testing.T) {
	c := blobConfig()
	c.Augment = true
	tr := newBlobTrainer(t, c, "", false)
	if _, err := tr.Fit(context.Background(), blobSplits(t)); err == nil || !strings.Contains(err.Error(), "augment") {
		t.Fatalf("augment on 8×8 blobs: %v", err)
	}
}

// Interrupted without a run directory, Fit says there is no checkpoint,
// and the error is still ErrInterrupted.
func TestInterruptedWithoutARunDirectory(t *testing.T) {
	tr := newBlobTrainer(t, blobConfig(), "", false)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := tr.Fit(ctx, blobSplits(t))
	if !errors.Is(err, ErrInterrupted) || !strings.Contains(err.Error(), "no checkpoint") {
		t.Fatalf("interrupted without a run directory: %v", err)
	}
}

// A callback's stop after the last epoch stops nothing: the run completed
// (its summary said stopped early); a pause's summary has its steps.
func TestSummaryAtTheRunsEnds(t *testing.T) {
	c := blobConfig()
	c.Epochs = 2
	tr := newBlobTrainer(t, c, "", false)
	tr.Callbacks.OnEpochEnd = func(r MetricsRecord) bool { return r.Epoch >= 2 }
	sum, err := tr.Fit(context.Background(), blobSplits(t))
	if err != nil || sum.StoppedEarly || sum.EpochsRun != 2 {
		t.Fatalf("a callback's stop after the last epoch: %v, stopped early %v after %d epochs (%s)", err, sum.StoppedEarly, sum.EpochsRun, sum.StopReason)
	}
	c.StopAfterEpoch = 1
	tr = newBlobTrainer(t, c, "", false)
	sum, err = tr.Fit(context.Background(), blobSplits(t))
	if err != nil || sum.Steps == 0 || sum.TrainSeconds == 0 {
		t.Fatalf("a pause's summary: %v, steps %d, seconds %v", err, sum.Steps, sum.TrainSeconds)
	}
}

// A run without a test set has no test loss: summary.json said 0, a perfect
// score to anything that read it.
func TestSummaryWithoutATestSetHasNoTestFigures(t *testing.T) {
	c := blobConfig()
	c.Epochs = 1
	dir := t.TempDir()
	s := blobSplits(t)
	s.Test = nil
	if _, err := newBlobTrainer(t, c, dir, false).Fit(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, SummaryFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), `"test_`) {
		t.Fatalf("summary.json of a run without a test set:\n%s", b)
	}
}

// Evaluation's loss is plain cross-entropy whatever --label-smoothing, as
// Keras and Lightning report it: validation and test losses, val_loss's
// early stopping and the plateau schedule read it.
func TestEvaluateLossIsPlainCrossEntropy(t *testing.T) {
	c := blobConfig()
	c.LabelSmoothing = 0.2
	tr := newBlobTrainer(t, c, "", false)
	ds := blobSplits(t).Val
	r, err := tr.Evaluate(ds)
	if err != nil {
		t.Fatal(err)
	}
	tr.Model.SetTraining(false)
	x := engine.New(engine.Float32, ds.Len(), ds.Channels, ds.Height, ds.Width)
	copy(x.Float32(), ds.Images)
	out, err := tr.Model.Forward(x)
	if err != nil {
		t.Fatal(err)
	}
	want := 0.0
	for i := range ds.Len() {
		row := out.Values()[i*4 : (i+1)*4]
		lse := 0.0
		for _, v := range row {
			lse += math.Exp(v)
		}
		want += math.Log(lse) - row[ds.Labels[i]]
	}
	want /= float64(ds.Len())
	if math.Abs(r.Loss-want) > 1e-5*want {
		t.Fatalf("evaluation loss %v with label smoothing 0.2, plain cross-entropy %v", r.Loss, want)
	}
}
