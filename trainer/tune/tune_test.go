package tune

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

// One objective for the package's tests, so the data is read once.
var realTrainer = NewTrainer()

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kiln-tune-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	csvDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	csvDir  string
	csvOnce sync.Once
	csvErr  error
)

// tinyBase is a one-epoch mlp on 1% of MNIST (480 training images, 120 for
// validation, 100 for test): each trial takes a fraction of a second. Under
// the race detector it is the same on a generated CSV data set of the same
// sizes (4 classes of noisy 16-feature blobs).
func tinyBase(t *testing.T) trainer.Config {
	t.Helper()
	c := trainer.DefaultConfigFor("mlp", "mnist")
	c.Subset, c.ValFraction, c.Epochs, c.Batch, c.Hidden = 0.01, 0.2, 1, 32, 16
	if !raceEnabled {
		if _, err := data.Locate("mnist", ""); err != nil {
			t.Skipf("real MNIST not available: %v", err)
		}
		return c
	}
	csvOnce.Do(func() { csvErr = writeBlobsCSV(csvDir) })
	if csvErr != nil {
		t.Fatal(csvErr)
	}
	c.Dataset, c.DataDir, c.Subset = "csv", csvDir, 0
	return c
}

func writeBlobsCSV(dir string) error {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, f := range []struct {
		name string
		rows int
	}{{"train.csv", 600}, {"test.csv", 100}} {
		var b strings.Builder
		for i := 0; i < 16; i++ {
			fmt.Fprintf(&b, "x%d,", i)
		}
		b.WriteString("label\n")
		for r := 0; r < f.rows; r++ {
			c := rng.IntN(4)
			for i := 0; i < 16; i++ {
				v := rng.NormFloat64()
				if i/4 == c {
					v += 1.5
				}
				fmt.Fprintf(&b, "%.4f,", v)
			}
			fmt.Fprintf(&b, "%d\n", c)
		}
		if err := os.WriteFile(filepath.Join(dir, f.name), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func readCSV(t *testing.T, path string) [][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

func TestGridTuneOfRealTrialsRanksAndWritesTheBest(t *testing.T) {
	dir := t.TempDir()
	space := mustSpace(t, "lr: [1e-4, 0.05]\noptimizer: [sgd, adamw]")
	tu, err := Start(dir, tinyBase(t), space, Settings{Strategy: "grid", Metric: "val_acc", Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	tu.Objective, tu.Parallel = realTrainer.Objective(), 2
	st, err := tu.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Trials) != 4 {
		t.Fatalf("%d trials, want the 4 grid points", len(st.Trials))
	}
	for _, tr := range st.Trials {
		if tr.Status != Done || tr.Metric == nil || tr.Starts != 1 {
			t.Fatalf("trial %s: %s %v starts %d (%s)", tr.Name(), tr.Status, tr.Metric, tr.Starts, tr.Error)
		}
		// A normal run directory, as kiln train writes it.
		for _, f := range []string{trainer.ConfigFile, "model.json", trainer.MetricsFile, trainer.LogFile,
			trainer.LastWeights, trainer.CheckpointFile, trainer.SummaryFile} {
			if _, err := os.Stat(filepath.Join(dir, tr.Dir, f)); err != nil {
				t.Errorf("trial %s: %v", tr.Name(), err)
			}
		}
		if _, ok := tr.Metrics["test_acc"]; !ok || tr.Steps != 15 {
			t.Errorf("trial %s: metrics %v, %d steps (want test_acc and 15 steps)", tr.Name(), tr.Metrics, tr.Steps)
		}
	}

	rows := readCSV(t, filepath.Join(dir, ResultsFile))
	if len(rows) != 5 || strings.Join(rows[0][:3], ",") != "trial,status,val_acc" ||
		rows[0][len(rows[0])-2] != "lr" || rows[0][len(rows[0])-1] != "optimizer" {
		t.Fatalf("results.csv: %v", rows)
	}
	prev := 2.0
	for _, r := range rows[1:] {
		v, err := strconv.ParseFloat(r[2], 64)
		if err != nil || v > prev {
			t.Fatalf("results.csv is not sorted by val_acc: %v", rows)
		}
		prev = v
	}
	// An LR of 1e-4 for 15 steps learns next to nothing; 0.05 learns.
	best := st.Best()
	if best.Params["lr"] != 0.05 || *best.Metric < 0.5 || rows[1][0] != best.Name() {
		t.Errorf("best trial %s (%v) at %v; results:\n%v", best.Name(), best.Params, *best.Metric, rows)
	}
	for _, tr := range st.Trials {
		if tr.Params["lr"] == 1e-4 && *tr.Metric >= *best.Metric {
			t.Errorf("lr 1e-4 (%v) ranks with the best (%v)", *tr.Metric, *best.Metric)
		}
	}

	// best.yaml is a configuration kiln train takes: its own loader, then
	// validation, and it is the best trial's configuration.
	c, err := trainer.LoadConfigFile(filepath.Join(dir, BestFile), trainer.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := best.Config
	want.RunDir, want.Threads = "", 0
	if !sameConfig(c, want) || c.LR != 0.05 || c.Model != "mlp" || c.Hidden != 16 {
		t.Errorf("best.yaml gives %+v, want %+v", c, want)
	}
	var table bytes.Buffer
	if err := st.WriteTable(&table); err != nil || !strings.Contains(table.String(), "rank") {
		t.Errorf("table: %v\n%s", err, table.String())
	}
	if _, err := Start(dir, tinyBase(t), space, Settings{Strategy: "grid", Metric: "val_acc"}); err == nil {
		t.Error("a second tune in the same directory was accepted")
	}
}

func sameConfig(a, b trainer.Config) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func TestRealHalvingStopsTrialsThroughTheTrainerCallback(t *testing.T) {
	dir := t.TempDir()
	base := tinyBase(t)
	base.Epochs = 2 // 30 steps; rungs at 4, 8 and 16
	set := Settings{Strategy: "halving", Trials: 4, Metric: "val_loss", Seed: 3, Eta: 2, MinResource: 4, Unit: "steps"}
	tu, err := Start(dir, base, mustSpace(t, "lr: {min: 1e-4, max: 0.1, scale: log}"), set)
	if err != nil {
		t.Fatal(err)
	}
	tu.Objective = realTrainer.Objective()
	st, err := tu.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	stopped := 0
	for _, tr := range st.Trials {
		var sum trainer.Summary
		b, err := os.ReadFile(filepath.Join(dir, tr.Dir, trainer.SummaryFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &sum); err != nil {
			t.Fatal(err)
		}
		switch tr.Status {
		case Stopped:
			stopped++
			if !sum.StoppedEarly || sum.Steps >= 30 || tr.Steps != sum.Steps {
				t.Errorf("trial %s stopped at rung %d but its run says %+v", tr.Name(), tr.StopAt, sum)
			}
		case Done:
			if sum.Steps != 30 {
				t.Errorf("trial %s finished after %d steps, want 30", tr.Name(), sum.Steps)
			}
		default:
			t.Errorf("trial %s: %s %s", tr.Name(), tr.Status, tr.Error)
		}
	}
	if stopped == 0 || stopped == 4 || len(st.Rungs) == 0 || len(st.Rungs[0].Values) != 4 {
		t.Errorf("%d of 4 trials stopped; rungs %+v", stopped, st.Rungs)
	}
	if best := st.Best(); best == nil || best.Status != Done {
		t.Errorf("best %+v", best)
	}
}

// A tune cancelled while its second trial runs resumes without running the
// first again, continues the second from its checkpoint, and runs the third.
func TestResumeAfterCancelRerunsNoFinishedTrial(t *testing.T) {
	dir := t.TempDir()
	base := tinyBase(t)
	base.ValEvery = 5
	space := mustSpace(t, "lr: {min: 0.01, max: 0.1, scale: log}")
	tu, err := Start(dir, base, space, Settings{Strategy: "random", Trials: 3, Metric: "val_acc", Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	calls := map[string]int{}
	counting := func(stopSecond bool) Objective {
		inner := realTrainer.Objective()
		return func(ctx context.Context, r Run) (Outcome, error) {
			name := filepath.Base(r.Dir)
			mu.Lock()
			calls[name]++
			mu.Unlock()
			report := r.Report
			r.Report = func(rep Report) bool {
				if stopSecond && name == "002" {
					cancel() // as Ctrl-C would, mid-epoch
				}
				return report(rep)
			}
			return inner(ctx, r)
		}
	}
	tu.Objective = counting(true)
	st, err := tu.Run(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled tune returned %v", err)
	}
	if s := []Status{st.Trials[0].Status, st.Trials[1].Status, st.Trials[2].Status}; s[0] != Done || s[1] != Interrupted || s[2] != Pending {
		t.Fatalf("statuses after the cancel: %v", s)
	}
	if _, err := os.Stat(filepath.Join(dir, "trials/002", trainer.CheckpointFile)); err != nil {
		t.Fatalf("the interrupted trial left no checkpoint: %v", err)
	}
	first := filepath.Join(dir, "trials/001", trainer.SummaryFile)
	info, _ := os.Stat(first)
	before, _ := os.ReadFile(first)
	metricsBefore, _ := os.ReadFile(filepath.Join(dir, "trials/001", trainer.MetricsFile))

	tu2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	tu2.Objective = counting(false)
	st, err = tu2.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if calls["001"] != 1 || calls["002"] != 2 || calls["003"] != 1 {
		t.Errorf("objective calls per trial %v, want 001:1 002:2 003:1", calls)
	}
	t1, t2, t3 := st.Trials[0], st.Trials[1], st.Trials[2]
	if t1.Starts != 1 || t2.Starts != 2 || !t2.Resumed || t3.Starts != 1 || t3.Resumed {
		t.Errorf("starts %d %d %d, trial 2 resumed %v", t1.Starts, t2.Starts, t3.Starts, t2.Resumed)
	}
	for _, tr := range st.Trials {
		if tr.Status != Done {
			t.Errorf("trial %s: %s %s", tr.Name(), tr.Status, tr.Error)
		}
	}
	after, _ := os.ReadFile(first)
	info2, _ := os.Stat(first)
	metricsAfter, _ := os.ReadFile(filepath.Join(dir, "trials/001", trainer.MetricsFile))
	if !bytes.Equal(before, after) || !info.ModTime().Equal(info2.ModTime()) || !bytes.Equal(metricsBefore, metricsAfter) {
		t.Error("the finished trial's run directory changed on resume")
	}
	// The resumed trial ended exactly where an uninterrupted run ends.
	straight := t.TempDir()
	c := t2.Config
	c.RunDir = straight
	out, err := realTrainer.Objective()(context.Background(), Run{Dir: straight, Config: c})
	if err != nil {
		t.Fatal(err)
	}
	if out.Metrics["val_acc"] != t2.Metrics["val_acc"] || out.Metrics["test_loss"] != t2.Metrics["test_loss"] {
		t.Errorf("resumed trial %v, straight run %v", t2.Metrics, out.Metrics)
	}
	if rows := readCSV(t, filepath.Join(dir, ResultsFile)); len(rows) != 4 {
		t.Errorf("results.csv has %d rows", len(rows))
	}
	if _, err := os.Stat(filepath.Join(dir, BestFile)); err != nil {
		t.Error(err)
	}
}

// A trial of an older Kiln's tune may hold a setting nothing reads
// (--target without --early-stop, which that Kiln took): the trial trains
// without it, as it began, rather than failing for good on resume.
func TestObjectiveLeavesOutAnOlderTrialsInertSettings(t *testing.T) {
	c := tinyBase(t)
	c.Target, c.RunDir = 0.9, t.TempDir()
	if _, err := realTrainer.Objective()(t.Context(), Run{Dir: c.RunDir, Config: c}); err != nil {
		t.Fatal(err)
	}
}
