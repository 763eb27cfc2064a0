package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/tune"
)

// tinyTune is the training part of the tune tests: an mlp for one epoch on
// 1% of MNIST.
var tinyTune = []string{"--model", "mlp", "--dataset", "mnist", "--subset", "0.01", "--val-fraction", "0.2",
	"--epochs", "1", "--batch", "32", "--device", "cpu"}

func TestTuneGridRanksTrialsAndKilnTrainTakesBestYAML(t *testing.T) {
	needMNIST(t)
	dir := t.TempDir()
	space := filepath.Join(dir, "space.yaml")
	if err := os.WriteFile(space, []byte("lr: [1e-4, 0.05]\nhidden: [16, 32]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tuneDir := filepath.Join(dir, "tune")
	r := mustRun(t, dir, append([]string{"tune", "--space", space, "--strategy", "grid", "--parallel", "2", "--run-dir", tuneDir}, tinyTune...)...)
	if !strings.Contains(r.stdout, "rank  trial  status  val_acc") || !strings.Contains(r.stdout, "best: trial") {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
	b, err := os.ReadFile(filepath.Join(tuneDir, tune.ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(rows) != 5 || strings.Join(rows[0][:3], ",") != "trial,status,val_acc" {
		t.Fatalf("results.csv (%v):\n%s", err, b)
	}
	if h := rows[0]; h[len(h)-2] != "lr" || h[len(h)-1] != "hidden" {
		t.Errorf("results.csv should end with the searched settings: %v", h)
	}
	if st, err := tune.LoadState(tuneDir); err != nil || st.Parallel != 2 {
		t.Errorf("tune.json: parallel %v (%v), want 2 for a resume without --parallel", st, err)
	}
	best := rows[1][0]
	if rows[1][len(rows[1])-2] != "0.05" {
		t.Errorf("lr 1e-4 won a one-epoch tune:\n%s", b)
	}

	// best.yaml through kiln train's own flag and config code.
	fs := pflag.NewFlagSet("train", pflag.ContinueOnError)
	cf := addConfigFlags(fs)
	c, err := cf.resolve(fs, filepath.Join(tuneDir, tune.BestFile))
	if err != nil {
		t.Fatal(err)
	}
	trial, err := trainer.LoadConfigFile(filepath.Join(tuneDir, "trials", best, trainer.ConfigFile), trainer.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	threads := trial.Threads
	trial.RunDir, trial.Threads = "", 0
	if x, y := mustJSON(t, c), mustJSON(t, trial); x != y {
		t.Errorf("best.yaml resolves to\n%s\nbut the best trial ran\n%s", x, y)
	}
	// And kiln train with it, on the trial's thread count, repeats the
	// trial exactly.
	again := filepath.Join(dir, "again")
	mustRun(t, dir, "train", "--config", filepath.Join(tuneDir, tune.BestFile), "--run-dir", again, "--threads", strconv.Itoa(threads))
	if x, y := summaryLoss(t, again), summaryLoss(t, filepath.Join(tuneDir, "trials", best)); x != y {
		t.Errorf("kiln train --config best.yaml: test loss %v, the trial had %v", x, y)
	}

	// A tune directory is not reused, and --resume refuses other settings
	// than the tune's, naming each.
	if r := kiln(t, dir, "tune", "--param", "lr=0.1,0.2", "--run-dir", tuneDir); r.code != 2 || !strings.Contains(r.stderr, "--resume") {
		t.Errorf("second tune into %s: exit %d %s", tuneDir, r.code, r.stderr)
	}
	other := append([]string{"tune", "--resume", "--run-dir", tuneDir, "--strategy", "grid"}, tinyTune...)
	other = append(other, "--momentum", "0.5", "--param", "lr=1e-4,0.05", "--param", "hidden=16,64", "--trials", "3")
	for _, want := range []string{"momentum: 0.9 → 0.5", `--param hidden: "16,32" → "16,64"`, "trials: 0 → 3", "only --parallel, --threads, --data-dir and --log-level may change"} {
		if r := kiln(t, dir, other...); r.code != 2 || !strings.Contains(r.stderr, want) {
			t.Errorf("--resume with other settings: exit %d, want %q in\n%s", r.code, want, r.stderr)
		}
	}
	if r := kiln(t, dir, "tune", "--resume", "--run-dir", tuneDir, "--subset", "0.02"); r.code != 2 || !strings.Contains(r.stderr, "give its whole first command again") {
		t.Errorf("--resume with one setting alone: exit %d\n%s", r.code, r.stderr)
	}
	// Resuming a finished tune runs nothing and prints the same ranking,
	// given its own flags again or none.
	for _, flags := range [][]string{nil, append([]string{"--space", space, "--strategy", "grid", "--parallel", "1"}, tinyTune...)} {
		r2 := mustRun(t, dir, append([]string{"tune", "--resume", "--run-dir", tuneDir}, flags...)...)
		if !strings.Contains(r2.stdout, "best: trial "+best) {
			t.Errorf("resumed finished tune (flags %q):\n%s", flags, r2.stdout)
		}
	}
}

// A random tune over fewer settings than --trials runs each once, saying
// so, and --log-level warn keeps the tune's info lines off the console, on
// the first run as on --resume (which takes the level the tune began with).
func TestTuneRandomRunsEachSettingOnceAtTheConsoleLevel(t *testing.T) {
	needMNIST(t)
	dir := t.TempDir()
	tuneDir := filepath.Join(dir, "tune")
	r := mustRun(t, dir, append([]string{"tune", "--param", "lr=0.01,0.05", "--trials", "5", "--log-level", "warn",
		"--run-dir", tuneDir}, tinyTune...)...)
	if !strings.Contains(r.stderr, "fewer distinct settings than --trials") {
		t.Errorf("no word that 2 settings run once each:\n%s", r.stderr)
	}
	if strings.Contains(r.stderr, "INF") {
		t.Errorf("--log-level warn, yet info lines:\n%s", r.stderr)
	}
	b, err := os.ReadFile(filepath.Join(tuneDir, tune.ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(rows) != 3 || rows[1][len(rows[1])-1] == rows[2][len(rows[2])-1] {
		t.Errorf("want the two learning rates once each (%v):\n%s", err, b)
	}
	if r := mustRun(t, dir, "tune", "--resume", "--run-dir", tuneDir); strings.Contains(r.stderr, "INF") {
		t.Errorf("--resume of a --log-level warn tune, info lines:\n%s", r.stderr)
	}
	// The console's level is not the tune's: a resume may change it, as
	// kiln train --resume may.
	if r := mustRun(t, dir, "tune", "--resume", "--run-dir", tuneDir, "--log-level", "info"); !strings.Contains(r.stderr, "INF") {
		t.Errorf("--resume --log-level info, no info lines:\n%s", r.stderr)
	}
	if r := kiln(t, dir, "tune", "--resume", "--run-dir", tuneDir, "--log-level", "loud"); r.code != 2 {
		t.Errorf("--resume --log-level loud: exit %d\n%s", r.code, r.stderr)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func summaryLoss(t *testing.T, dir string) float64 {
	t.Helper()
	var s trainer.Summary
	b, err := os.ReadFile(filepath.Join(dir, trainer.SummaryFile))
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	if err != nil {
		t.Fatal(err)
	}
	return *s.TestLoss
}

// A real kill: SIGKILL once the first trial has finished and the second has
// written its first checkpoint, then --resume.
func TestTuneResumesAfterAKillWithoutRerunningFinishedTrials(t *testing.T) {
	needMNIST(t)
	dir := t.TempDir()
	tuneDir := filepath.Join(dir, "tune")
	args := []string{"tune", "--param", "lr=0.01..0.1:log", "--strategy", "random", "--trials", "4", "--run-dir", tuneDir,
		"--model", "mlp", "--hidden", "64", "--dataset", "mnist", "--subset", "0.1", "--epochs", "2", "--device", "cpu"}
	cmd := exec.Command(kilnBin, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var st *tune.State
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, cerr := os.Stat(filepath.Join(tuneDir, "trials", "002", trainer.CheckpointFile))
		if s, err := tune.LoadState(tuneDir); err == nil && s.Trials[0].Status == tune.Done && (cerr == nil || s.Trials[1].Status.Finished()) {
			st = s
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("the tune ended (%v) before it could be killed:\n%s", err, stderr.String())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("trial 1 never finished:\n%s", stderr.String())
		}
	}
	cmd.Process.Kill()
	<-exited
	if st.Trials[1].Status.Finished() {
		t.Skip("trial 002 finished before the kill")
	}
	first := filepath.Join(tuneDir, "trials", "001", trainer.SummaryFile)
	info, err := os.Stat(first)
	if err != nil {
		t.Fatal(err)
	}
	killed, _ := tune.LoadState(tuneDir)
	for _, tr := range killed.Trials {
		t.Logf("at the kill: trial %s %s", tr.Name(), tr.Status)
	}

	r := mustRun(t, dir, "tune", "--run-dir", tuneDir, "--resume")
	after, err := tune.LoadState(tuneDir)
	if err != nil {
		t.Fatal(err)
	}
	if info2, _ := os.Stat(first); !info2.ModTime().Equal(info.ModTime()) {
		t.Error("trial 001's summary.json was rewritten on resume")
	}
	for i, tr := range after.Trials {
		if tr.Status != tune.Done {
			t.Errorf("trial %s: %s %s", tr.Name(), tr.Status, tr.Error)
		}
		wantStarts := 1
		if s := killed.Trials[i].Status; s == tune.Running || s == tune.Interrupted {
			wantStarts = 2 // it was running at the kill
		}
		if tr.Starts != wantStarts {
			t.Errorf("trial %s started %d times, want %d (status at the kill: %s)", tr.Name(), tr.Starts, wantStarts, killed.Trials[i].Status)
		}
	}
	if killed.Trials[1].Status == tune.Running && !after.Trials[1].Resumed {
		t.Error("trial 002 had a checkpoint at the kill but started again from scratch")
	}
	if after.Trials[0].Finished != st.Trials[0].Finished {
		t.Error("trial 001 finished again")
	}
	if !strings.Contains(r.stdout, "best: trial") {
		t.Errorf("stdout:\n%s", r.stdout)
	}
}

func TestTuneParallelismRespectsCores(t *testing.T) {
	for _, c := range []struct{ parallel, threads, cores, wantP, wantT int }{
		{1, 0, 16, 1, 16},
		{4, 0, 16, 4, 4},
		{3, 0, 16, 3, 5},
		{4, 0, 2, 2, 1}, // capped at the cores
		{4, 8, 16, 2, 8},
		{2, 4, 2, 1, 2},
		{0, 0, 8, 1, 8},
	} {
		p, th := tuneParallelism(c.parallel, c.threads, c.cores)
		if p != c.wantP || th != c.wantT || p*th > c.cores {
			t.Errorf("parallel %d threads %d on %d cores: %d × %d, want %d × %d", c.parallel, c.threads, c.cores, p, th, c.wantP, c.wantT)
		}
	}
}

func TestTuneUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"tune"}, "no search space"},
		{[]string{"tune", "--param", "lr=0.1,0.2", "--strategy", "bayes"}, "--strategy"},
		{[]string{"tune", "--param", "lrate=0.1,0.2"}, "lrate: not a training setting"},
		{[]string{"tune", "--param", "lr=0.1,0.2", "--metric", "accuracy"}, "--metric"},
		{[]string{"tune", "--space", "nope.yaml"}, "nope.yaml"},
		{[]string{"tune", "--resume"}, "--resume needs --run-dir"},
		{[]string{"tune", "--param", "hidden=16,32"}, "model lenet has no such setting"},
	} {
		r := kiln(t, dir, c.args...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("kiln %s: exit %d, stderr %q; want exit 2 saying %q", strings.Join(c.args, " "), r.code, r.stderr, c.want)
		}
	}
}

// --resume of a run or a tune that is not there is refused and makes
// nothing: no directory, no kiln.lock in an empty one.
func TestResumeOfNothingLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{
		{"train", "--resume", "--run-dir", "absent"},
		{"train", "--resume", "--run-dir", "empty"},
		{"tune", "--resume", "--run-dir", "absent"},
		{"tune", "--resume", "--run-dir", "empty"},
	} {
		r := kiln(t, dir, c...)
		if r.code == 0 || !strings.Contains(r.stderr, "resume") {
			t.Errorf("kiln %s: exit %d, %q", strings.Join(c, " "), r.code, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, "absent")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("kiln %s made the directory: %v", strings.Join(c, " "), err)
		}
		if entries, _ := os.ReadDir(filepath.Join(dir, "empty")); len(entries) != 0 {
			t.Errorf("kiln %s left %v in an empty directory", strings.Join(c, " "), entries)
		}
	}
}

// TestTuneOnAFullDiskAtItsStart: a disk that fills before tune.json is
// written is an I/O error (exit 1, naming the disk), not a usage error, and
// leaves no directory behind; the same command then runs the tune.
func TestTuneOnAFullDiskAtItsStart(t *testing.T) {
	csv, dir := faultCSV(t), filepath.Join(t.TempDir(), "tune")
	args := []string{"tune", "--dataset", "csv", "--data-dir", csv, "--model", "mlp", "--hidden", "8", "--epochs", "1",
		"--param", "lr=0.01,0.05", "--device", "cpu", "--threads", "1", "--run-dir", dir}
	r := runWithFault(t, faultKiln(t), "enospc:1", args...)
	if r.code != 1 || !strings.Contains(r.stderr, "is full") {
		t.Fatalf("exit %d, want 1 and a message naming the full disk:\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the tune that did not start left its directory: %v", err)
	}
	if r := kiln(t, workDir, args...); r.code != 0 {
		t.Errorf("the same tune with room on the disk: exit %d\n%s", r.code, r.stderr)
	}
}

func TestLRFindWritesTheCurveAndSuggestsARate(t *testing.T) {
	needMNIST(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "lr")
	r := mustRun(t, dir, "lr-find", "--model", "mlp", "--hidden", "32", "--subset", "0.05", "--steps", "80", "--run-dir", out, "--device", "cpu")
	m := regexp.MustCompile(`suggested lr (\S+) `).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("stdout:\n%s", r.stdout)
	}
	lr, err := strconv.ParseFloat(m[1], 64)
	if err != nil || math.IsNaN(lr) || lr < 1e-4 || lr > 1 {
		t.Errorf("suggested lr %q: want a finite rate in [1e-4, 1] for SGD on an mlp", m[1])
	}
	b, err := os.ReadFile(filepath.Join(out, lrFindCSV))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || strings.Join(rows[0], ",") != "step,lr,loss,smoothed_loss" || len(rows) < 40 || len(rows) > 81 {
		t.Fatalf("lr_find.csv (%v): %d rows, header %v", err, len(rows), rows[0])
	}
	if first, _ := strconv.ParseFloat(rows[1][1], 64); first != 1e-7 {
		t.Errorf("first lr %v, want --start 1e-7", first)
	}
	f, err := os.Open(filepath.Join(out, lrFindPNG))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil || img.Bounds().Dx() < 400 {
		t.Fatalf("lr_find.png: %v %v", err, img)
	}
	var j map[string]any
	b, _ = os.ReadFile(filepath.Join(out, lrFindJSON))
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	if v, ok := j["suggested_lr"].(float64); !ok || math.Abs(v/lr-1) > 1e-2 {
		t.Errorf("lr_find.json: suggested_lr %v, printed %v", j["suggested_lr"], lr)
	}
	if _, err := os.Stat(filepath.Join(out, trainer.CheckpointFile)); err == nil {
		t.Error("lr-find kept a checkpoint")
	}
	if r := kiln(t, dir, "lr-find", "--start", "1", "--end", "0.1", "--run-dir", out); r.code != 2 {
		t.Errorf("--start above --end: exit %d %s", r.code, r.stderr)
	}
}

// A full disk in a trial stops the tune (exit 1, saying how to go on) and
// leaves the trial to --resume rather than failed for good, which let a
// lesser trial win; a tune killed before its first trial resumes at its
// --threads, not at the machine's.
func TestTuneStoppedByItsMachineResumes(t *testing.T) {
	bin, csv := faultKiln(t), faultCSV(t)
	args := func(dir string) []string {
		return []string{"tune", "--dataset", "csv", "--data-dir", csv, "--model", "mlp", "--hidden", "8", "--epochs", "1",
			"--param", "lr=0.01,0.05,0.1", "--strategy", "grid", "--device", "cpu", "--threads", "1", "--run-dir", dir}
	}
	ref := filepath.Join(t.TempDir(), "tune")
	list := filepath.Join(t.TempDir(), "mutations")
	if r := runWithFault(t, bin, "count:"+list, args(ref)...); r.code != 0 {
		t.Fatalf("reference tune: exit %d\n%s", r.code, r.stderr)
	}
	b, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	muts := strings.Split(strings.TrimSpace(string(b)), "\n")
	renames := mutationsWhere(muts, func(op, path string) bool { return op == "rename" && filepath.Base(path) == tune.StateFile })
	trial2 := mutationsWhere(muts, func(op, path string) bool {
		return op == "create" && strings.Contains(path, filepath.Join("trials", "002"))
	})
	if len(renames) < 2 || len(trial2) == 0 {
		t.Fatalf("tune.json saved %d times, trial 002 created %d files", len(renames), len(trial2))
	}

	killed := filepath.Join(t.TempDir(), "tune")
	if r := runWithFault(t, bin, "kill:"+strconv.Itoa(renames[1]), args(killed)...); !r.killed {
		t.Fatalf("not killed at the first trial's start: exit %d\n%s", r.code, r.stderr)
	}
	if r := kiln(t, workDir, "tune", "--run-dir", killed, "--resume"); r.code != 0 ||
		!strings.Contains(regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(r.stderr, ""), "threads_per_trial=1") {
		t.Errorf("resume of a tune killed before its first trial: exit %d\n%s", r.code, r.stderr)
	}

	full := filepath.Join(t.TempDir(), "tune")
	r := runWithFault(t, bin, "enospc1:"+strconv.Itoa(trial2[0]), args(full)...)
	if r.code != 1 || !strings.Contains(r.stderr, "is full") || !strings.Contains(r.stderr, "--resume") {
		t.Fatalf("a full disk in trial 002: exit %d, want 1 and how to go on\n%s", r.code, r.stderr)
	}
	if st, err := tune.LoadState(full); err != nil || st.Trials[1].Status != tune.Interrupted {
		t.Fatalf("trial 002 after the full disk: %v %+v", err, st)
	}
	mustRun(t, workDir, "tune", "--run-dir", full, "--resume")
	st, err := tune.LoadState(full)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range st.Trials {
		if tr.Status != tune.Done {
			t.Errorf("trial %s after the resume: %s %s", tr.Name(), tr.Status, tr.Error)
		}
	}
}

// A tune of a CSV regression ranks by val_rmse, as the README says (it
// ranked by val_acc, which such runs do not report: every trial trained,
// then failed).
func TestTuneOfACSVRegressionRanksByRMSE(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("a,b,y\n")
	for i := range 200 {
		x, z := float64(i%13)/13, float64(i%7)/7
		fmt.Fprintf(&b, "%g,%g,%g\n", x, z, 2*x-z+0.01*float64(i%3))
	}
	csv := filepath.Join(dir, "reg.csv")
	if err := os.WriteFile(csv, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, dir, "tune", "--dataset", "csv", "--data-dir", csv, "--model", "mlp", "--param", "lr=0.001,0.01",
		"--strategy", "grid", "--epochs", "1", "--threads", "1", "--device", "cpu", "--run-dir", filepath.Join(dir, "tune"))
	if !strings.Contains(r.stdout, "val_rmse") || strings.Contains(r.stdout, "failed") {
		t.Errorf("a CSV regression's tune:\n%s%s", r.stdout, r.stderr)
	}
}

// A tune whose data was not found resumes with --data-dir naming where it
// is, as its message says (the resume refused the flag: "settings given
// without the tune's --space or --param").
func TestTuneResumesWithTheDataElsewhere(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("a,b,y\n")
	for i := range 120 {
		fmt.Fprintf(&b, "%g,%g,%d\n", float64(i%13)/13, float64(i%7)/7, i%2)
	}
	good := filepath.Join(dir, "t.csv")
	if err := os.WriteFile(good, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	tuneDir := filepath.Join(dir, "tune")
	// Without --csv-task or --metric the file's task decides the metric, so
	// a tune of a missing file cannot begin.
	r := kiln(t, dir, "tune", "--dataset", "csv", "--data-dir", filepath.Join(dir, "gone.csv"), "--model", "mlp", "--param", "lr=0.01,0.02",
		"--strategy", "grid", "--epochs", "1", "--threads", "1", "--device", "cpu", "--run-dir", tuneDir)
	if r.code != 2 || !strings.Contains(r.stderr, "give --csv-task, or --metric") {
		t.Fatalf("a tune of a missing file of unknown task: exit %d\n%s", r.code, r.stderr)
	}
	r = kiln(t, dir, "tune", "--dataset", "csv", "--data-dir", filepath.Join(dir, "gone.csv"), "--csv-task", "classification", "--model", "mlp",
		"--param", "lr=0.01,0.02", "--strategy", "grid", "--epochs", "1", "--threads", "1", "--device", "cpu", "--run-dir", tuneDir)
	if r.code == 0 || !strings.Contains(r.stderr, "--data-dir DIR for data found elsewhere") {
		t.Fatalf("a tune of a missing file: exit %d\n%s", r.code, r.stderr)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(good, filepath.Join(dir, "sub", "t.csv")); err != nil {
		t.Fatal(err)
	}
	if r := mustRun(t, dir, "tune", "--run-dir", tuneDir, "--resume", "--data-dir", "sub/t.csv"); !strings.Contains(r.stdout, "best: trial") {
		t.Errorf("resumed with --data-dir:\n%s%s", r.stdout, r.stderr)
	}
	// Recorded absolute, as a start records it: kiln eval from anywhere.
	st, err := tune.LoadState(tuneDir)
	if err != nil || st.Trials[0].Config.DataDir != filepath.Join(dir, "sub", "t.csv") {
		t.Errorf("tune.json's trial data_dir: %v (%v)", st.Trials[0].Config.DataDir, err)
	}
	// Where the space chooses the data, a missing file is that trial's own
	// failure, and --data-dir cannot override the space on resume.
	spaced := filepath.Join(dir, "spaced")
	r = kiln(t, dir, "tune", "--dataset", "csv", "--csv-task", "classification", "--model", "mlp", "--param",
		"data_dir="+filepath.Join(dir, "sub", "t.csv")+","+filepath.Join(dir, "gone.csv"), "--strategy", "grid", "--epochs", "1",
		"--threads", "1", "--device", "cpu", "--run-dir", spaced)
	if r.code != 0 || !strings.Contains(r.stdout, "failed") {
		t.Errorf("a space with a missing file: exit %d, want the tune to end with that trial failed\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r := kiln(t, dir, "tune", "--run-dir", spaced, "--resume", "--data-dir", "sub/t.csv"); r.code != 2 || !strings.Contains(r.stderr, "space chooses each trial's data") {
		t.Errorf("--data-dir over a space's data_dir: exit %d\n%s", r.code, r.stderr)
	}
}

// An older Kiln's tune.json has no thread count: a resume takes the one its
// trials began with from their config.yaml, not this machine's cores (other
// thread counts, other bits).
func TestTrialThreadsOfAnOlderTune(t *testing.T) {
	dir := t.TempDir()
	c := trainer.DefaultConfig()
	c.Threads = 1
	y, err := c.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "trials", "002"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(dir, "trials", "002", trainer.ConfigFile), string(y))
	trials := []*tune.Trial{{ID: 1, Dir: "trials/001"}, {ID: 2, Dir: "trials/002", Starts: 1}}
	if got := trialThreads(dir, trials); got != 1 {
		t.Fatalf("trialThreads = %d, want 1", got)
	}
	if got := trialThreads(dir, trials[:1]); got != 0 {
		t.Fatalf("no trial began: trialThreads = %d, want 0", got)
	}
}
