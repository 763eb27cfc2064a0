package tune

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/kiln-ml/kiln/internal/durable"
	"github.com/kiln-ml/kiln/trainer"
)

func TestPromotedKeepsTheTopOneInEta(t *testing.T) {
	for _, c := range []struct {
		values   []float64
		value    float64
		eta      int
		maximize bool
		want     bool
	}{
		{[]float64{0.5}, 0.5, 3, true, true},                  // the first always continues
		{[]float64{0.5, 0.4}, 0.4, 3, true, false},            // ⌊2/3⌋ = 0 → only the best
		{[]float64{0.5, 0.6}, 0.6, 3, true, true},             // the best
		{[]float64{0.5, 0.6, 0.4, 0.55}, 0.55, 2, true, true}, // top 2 of 4
		{[]float64{0.5, 0.6, 0.4, 0.55}, 0.5, 2, true, false},
		{[]float64{0.5, 0.6, 0.4, 0.55}, 0.4, 2, false, true}, // lower is better
		{[]float64{0.2, 0.2, 0.9}, 0.2, 3, false, true},       // ties are not ahead
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9}, 3, 3, false, true},
		{[]float64{1, 2, 3, 4, 5, 6, 7, 8, 9}, 4, 3, false, false},
	} {
		if got := promoted(c.values, c.value, c.eta, c.maximize); got != c.want {
			t.Errorf("promoted(%v, %v, eta %d, max %v) = %v", c.values, c.value, c.eta, c.maximize, got)
		}
	}
}

// fakeCurves is an objective whose trial NNN reaches quality[NNN-1]·s/(s+1)
// of val_acc at step s of 8, and stops when told to.
func fakeCurves(quality []float64, calls map[int]int) Objective {
	return func(ctx context.Context, r Run) (Outcome, error) {
		id, _ := strconv.Atoi(filepath.Base(r.Dir))
		calls[id]++
		q := quality[id-1]
		acc := 0.0
		step := 0
		for step < 8 {
			step++
			acc = q * float64(step) / float64(step+1)
			if r.Report(Report{Step: step, Epoch: float64(step) / 8, TotalSteps: 8, Metrics: map[string]float64{"val_acc": acc, "val_loss": 1 - acc}}) {
				break
			}
		}
		return Outcome{Metrics: map[string]float64{"val_acc": acc, "val_loss": 1 - acc}, Epochs: 1, Steps: step}, nil
	}
}

// With one worker the order is fixed, so ASHA's decisions are too: rungs at
// steps 1, 2 and 4 (η = 2), a trial continues while it is in the top half
// of those that reported at the rung before it.
func TestHalvingStopsTrialsOutsideTheTopOneInEta(t *testing.T) {
	dir := t.TempDir()
	base := trainer.DefaultConfig()
	set := Settings{Strategy: "halving", Trials: 6, Metric: "val_acc", Seed: 1, Eta: 2, MinResource: 1, Unit: "steps"}
	tu, err := Start(dir, base, mustSpace(t, "lr: {min: 0.01, max: 0.1, scale: log}"), set)
	if err != nil {
		t.Fatal(err)
	}
	calls := map[int]int{}
	tu.Objective = fakeCurves([]float64{0.5, 0.6, 0.4, 0.55, 0.7, 0.3}, calls)
	st, err := tu.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	status := map[int]Status{}
	stopAt := map[int]int{}
	for _, tr := range st.Trials {
		status[tr.ID], stopAt[tr.ID] = tr.Status, tr.StopAt
		if tr.Config.ValEvery != 1 {
			t.Errorf("trial %d validates every %d steps, want every rung step (1)", tr.ID, tr.Config.ValEvery)
		}
	}
	// Trial 3 (0.4) is behind 1 and 2 at the first rung (⌊3/2⌋ = 1 goes on);
	// trial 4 (0.55) is second of four there, then behind trial 2 at rung 2;
	// trial 6 is last at the first rung.
	wantStatus := map[int]Status{1: Done, 2: Done, 3: Stopped, 4: Stopped, 5: Done, 6: Stopped}
	wantStop := map[int]int{1: 0, 2: 0, 3: 1, 4: 2, 5: 0, 6: 1}
	if !reflect.DeepEqual(status, wantStatus) || !reflect.DeepEqual(stopAt, wantStop) {
		t.Fatalf("status %v stop rungs %v, want %v %v", status, stopAt, wantStatus, wantStop)
	}
	counts := []int{}
	for _, r := range st.Rungs {
		counts = append(counts, len(r.Values))
	}
	if !reflect.DeepEqual(counts, []int{6, 4, 3}) || st.Rungs[2].Resource != 4 {
		t.Errorf("rung populations %v (resource of rung 3: %v), want [6 4 3] and 4", counts, st.Rungs[2].Resource)
	}
	var order []int
	for _, tr := range st.Ranked() {
		order = append(order, tr.ID)
	}
	if !reflect.DeepEqual(order, []int{5, 2, 1, 4, 3, 6}) {
		t.Errorf("ranking %v, want finished trials first by val_acc, then stopped ones", order)
	}
	if st.Trials[2].Steps != 1 || st.Trials[3].Steps != 2 || st.Trials[0].Steps != 8 {
		t.Errorf("steps run: %d %d %d, want 1 2 8", st.Trials[2].Steps, st.Trials[3].Steps, st.Trials[0].Steps)
	}
	// The state on disk says the same.
	disk, err := LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if disk.Trials[3].StopAt != 2 || len(disk.Rungs) != 3 || disk.Trials[4].Status != Done {
		t.Errorf("tune.json: %+v", disk.Trials[3])
	}
}

func TestHalvingNeedsARungBelowTheRunLength(t *testing.T) {
	base := trainer.DefaultConfig()
	base.Epochs = 1
	set := Settings{Strategy: "halving", Trials: 2, Metric: "val_acc", Eta: 3, MinResource: 1, Unit: "epochs"}
	if _, err := Start(t.TempDir(), base, mustSpace(t, "lr: [0.1, 0.01]"), set); err == nil {
		t.Fatal("a halving tune whose first rung is the whole run was accepted")
	}
	base.ValFraction = 0
	set.Unit = "steps"
	if _, err := Start(t.TempDir(), base, mustSpace(t, "lr: [0.1, 0.01]"), set); err == nil {
		t.Fatal("halving without a validation split was accepted")
	}
}

// A trial that passed a rung alone is stopped at its next validation once
// later trials push it out of that rung's top 1/eta.
func TestHalvingStopsARunningTrialOvertakenAtAPassedRung(t *testing.T) {
	set := Settings{Strategy: "halving", Trials: 4, Metric: "val_loss", Seed: 1, Eta: 2, MinResource: 1, Unit: "epochs"}
	base := trainer.DefaultConfig()
	base.Epochs = 4
	tu, err := Start(t.TempDir(), base, mustSpace(t, "lr: [0.1, 0.01, 0.001, 0.0001]"), set)
	if err != nil {
		t.Fatal(err)
	}
	tr := tu.State.Trials
	at := func(epoch float64, loss float64) Report {
		return Report{Epoch: epoch, Metrics: map[string]float64{"val_loss": loss}}
	}
	if tu.report(tr[0], at(1, 2.0)) {
		t.Fatal("the first trial at a rung was stopped")
	}
	if tu.report(tr[0], at(1.5, 1.9)) || tr[0].Rung != 1 {
		t.Fatalf("trial 1 stopped with no peers (rung %d)", tr[0].Rung)
	}
	// Three better trials reach epoch 1 while trial 1 runs on (the second
	// and third of them behind the first: ⌊3/2⌋ = 1, ⌊4/2⌋ = 2): trial 1
	// is now last of four.
	for i, loss := range []float64{1.0, 1.1, 1.2} {
		if stop := tu.report(tr[i+1], at(1, loss)); stop != (i > 0) {
			t.Fatalf("trial %d at loss %v: stop %v", i+2, loss, stop)
		}
	}
	if !tu.report(tr[0], at(1.75, 1.8)) || tr[0].StopAt != 1 {
		t.Fatalf("trial 1, overtaken at rung 1, was not stopped (stop_at %d)", tr[0].StopAt)
	}
	if tu.report(tr[1], at(1.75, 0.9)) {
		t.Fatal("trial 2, the best at rung 1, was stopped")
	}
}

// A trial overtaken at a rung it passed, whose next report is its run's
// last validation, has ended, not stopped: it was recorded "stopped" and
// ranked with the stopped ones though it ran its whole budget.
func TestHalvingDoesNotStopARunAtItsEnd(t *testing.T) {
	set := Settings{Strategy: "halving", Trials: 2, Metric: "val_loss", Seed: 1, Eta: 2, MinResource: 1, Unit: "epochs"}
	base := trainer.DefaultConfig()
	base.Epochs = 2
	tu, err := Start(t.TempDir(), base, mustSpace(t, "lr: [0.1, 0.01]"), set)
	if err != nil {
		t.Fatal(err)
	}
	tr := tu.State.Trials
	at := func(epoch float64, loss float64) Report {
		return Report{Epoch: epoch, Metrics: map[string]float64{"val_loss": loss}}
	}
	if tu.report(tr[0], at(1, 2.0)) || tu.report(tr[1], at(1, 1.0)) {
		t.Fatal("a trial was stopped at rung 1 where ⌊2/2⌋ = 1 goes on")
	}
	if tu.report(tr[0], at(2, 1.9)) || tr[0].StopAt != 0 {
		t.Fatalf("trial 1 was stopped at its run's last validation (stop_at %d)", tr[0].StopAt)
	}
}

// A training run's directory is not a tune's: starting one there is
// refused, naming the run's file, and writes nothing.
func TestStartRefusesARunDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, trainer.ConfigFile), []byte("epochs: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	set := Settings{Strategy: "grid", Metric: "val_acc"}
	if _, err := Start(dir, trainer.DefaultConfig(), mustSpace(t, "lr: [0.1, 0.01]"), set); err == nil ||
		!strings.Contains(err.Error(), "holds a training run (config.yaml)") {
		t.Errorf("a tune in a run's directory: %v, want a refusal naming config.yaml", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the refusal changed the directory: %v", entries)
	}
}

// A trial stopped by its machine (a full disk, a data file missing) is not
// failed, which would count as finished and let a lesser trial win: the
// tune stops with the error, the trial and those after it wait, and
// --resume runs them once the cause is mended.
func TestEnvironmentalErrorStopsTheTuneAndResumes(t *testing.T) {
	dir := t.TempDir()
	tu, err := Start(dir, trainer.DefaultConfig(), mustSpace(t, "lr: [0.01, 0.02, 0.03]"), Settings{Strategy: "grid", Metric: "val_acc"})
	if err != nil {
		t.Fatal(err)
	}
	calls := map[int]int{}
	good := fakeCurves([]float64{0.5, 0.9, 0.6}, calls)
	full := &durable.DiskFullError{Path: filepath.Join(dir, "x"), Err: syscall.ENOSPC}
	tu.Objective = func(ctx context.Context, r Run) (Outcome, error) {
		if filepath.Base(r.Dir) == "002" {
			return Outcome{}, fmt.Errorf("writing the checkpoint: %w", full)
		}
		return good(ctx, r)
	}
	st, err := tu.Run(context.Background())
	if !errors.As(err, &full) {
		t.Fatalf("the tune returned %v, want the full disk", err)
	}
	if s := []Status{st.Trials[0].Status, st.Trials[1].Status, st.Trials[2].Status}; s[0] != Done || s[1] != Interrupted || s[2] != Pending {
		t.Fatalf("statuses %v, want done, interrupted, pending", s)
	}
	tu2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	tu2.Objective = good
	st, err = tu2.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if b := st.Best(); b == nil || b.ID != 2 {
		t.Errorf("best %+v, want trial 2 (0.9)", b)
	}
}

// A trial whose checkpoint is damaged (or lost) stops the tune, saying how
// to mend it, as the machine's errors do: it failed the trial for good, and
// restoring the file then changed nothing.
func TestDamagedTrialCheckpointStopsTheTune(t *testing.T) {
	// Whatever the space chooses: a space of data sets too (whose missing
	// files are a trial's own, not the machine's).
	for _, space := range []string{"lr: [0.01, 0.02, 0.03]", "dataset: [mnist, fashion-mnist, mnist-rotation]"} {
		damagedTrialStopsTheTune(t, space)
	}
}

func damagedTrialStopsTheTune(t *testing.T, space string) {
	dir := t.TempDir()
	tu, err := Start(dir, trainer.DefaultConfig(), mustSpace(t, space), Settings{Strategy: "grid", Metric: "val_loss"})
	if err != nil {
		t.Fatal(err)
	}
	good := fakeCurves([]float64{0.5, 0.9, 0.6}, map[int]int{})
	tu.Objective = func(ctx context.Context, r Run) (Outcome, error) {
		if filepath.Base(r.Dir) == "002" {
			return Outcome{}, fmt.Errorf("resume: %w", &trainer.DamagedRunError{Err: errors.New("checkpoint.safetensors is damaged")})
		}
		return good(ctx, r)
	}
	st, err := tu.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "remove the trial's folder") || strings.Contains(err.Error(), "--run-dir") {
		t.Fatalf("%s: the tune returned %v, want the damaged checkpoint and what to do", space, err)
	}
	if s := []Status{st.Trials[0].Status, st.Trials[1].Status, st.Trials[2].Status}; s[0] != Done || s[1] != Interrupted || s[2] != Pending {
		t.Fatalf("%s: statuses %v, want done, interrupted, pending", space, s)
	}
}

// A stop (Ctrl-C) that comes once the last trial has ended stops nothing:
// the tune is complete and says its best; it said "interrupted" (exit 130)
// with every trial done, and left out the best.
func TestStopAfterTheLastTrialStopsNothing(t *testing.T) {
	dir := t.TempDir()
	tu, err := Start(dir, trainer.DefaultConfig(), mustSpace(t, "lr: [0.01, 0.02]"), Settings{Strategy: "grid", Metric: "val_acc"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	good := fakeCurves([]float64{0.5, 0.9}, map[int]int{})
	tu.Objective = func(c context.Context, r Run) (Outcome, error) {
		out, err := good(c, r)
		if filepath.Base(r.Dir) == "002" {
			cancel() // as the last trial ends
		}
		return out, err
	}
	st, err := tu.Run(ctx)
	if err != nil {
		t.Fatalf("a stop as the last trial ended: %v, want the tune complete", err)
	}
	if b := st.Best(); b == nil || b.ID != 2 {
		t.Errorf("best %+v, want trial 2", b)
	}
}
