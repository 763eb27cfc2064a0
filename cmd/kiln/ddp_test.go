package main

import (
	"bufio"
	"encoding/json"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/engine/safetensors"
	"github.com/kiln-ml/kiln/mpi"
	"github.com/kiln-ml/kiln/mpi/mpitesting"
)

// Data-parallel training (issue 18) with real ranks: kiln built with the
// mpi tag, run by mpirun -np 2 on this machine over loopback, against one
// process at the same global batch, on a model without batch norm: losses
// and weights within 1e-5 relative, two 2-rank runs bit-identical. Skips,
// saying why, without mpirun or Open MPI's headers, unless REQUIRE_MPI=1.
func TestDataParallelTwoRanks(t *testing.T) {
	mpirun := mpitesting.MPIRun(t)
	needMNIST(t)
	dir := t.TempDir()
	bin := kilnMPI(t)
	e := ddpEnv{mpirun: mpirun, bin: bin, dir: dir}
	args := e.args
	if out, err := exec.Command(bin, args("one")...).CombinedOutput(); err != nil {
		t.Fatalf("one process: %v\n%s", err, out)
	}
	out := mpiRun(t, mpirun, 2, bin, args("two")...)
	mpiRun(t, mpirun, 2, bin, args("again")...)

	compareMetrics(t, filepath.Join(dir, "one"), filepath.Join(dir, "two"), 1e-5)
	compareWeights(t, filepath.Join(dir, "one", "last.safetensors"), filepath.Join(dir, "two", "last.safetensors"), 1e-5)
	compareWeights(t, filepath.Join(dir, "two", "last.safetensors"), filepath.Join(dir, "again", "last.safetensors"), 0)

	var sum struct {
		WorldSize int `json:"world_size"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "two", "summary.json"))
	if err != nil || json.Unmarshal(b, &sum) != nil || sum.WorldSize != 2 {
		t.Errorf("summary.json of the 2-rank run: world_size %d (%v), want 2", sum.WorldSize, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "two", "config.yaml")); err != nil || !strings.Contains(string(b), "world_size: 2\n") {
		t.Errorf("config.yaml of the 2-rank run does not record world_size: 2 (%v):\n%s", err, b)
	}
	plain := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(out, "")
	for _, r := range []string{"rank=0", "rank=1"} {
		if !strings.Contains(plain, r) {
			t.Errorf("no log line carries %s; output:\n%s", r, plain)
		}
	}

	t.Run("resume", func(t *testing.T) { ddpResume(t, e) })
	t.Run("ctrl-c", func(t *testing.T) { ddpCtrlC(t, e) })
	t.Run("rank 0 fails alone", func(t *testing.T) { ddpRankFailsAlone(t, e) })
	t.Run("built without MPI", func(t *testing.T) { ddpBuiltWithoutMPI(t, e) })
	t.Run("ranks that disagree", func(t *testing.T) { ddpRanksDisagree(t, e) })
	t.Run("batch that does not divide", func(t *testing.T) { ddpBatchIndivisible(t, e) })
	t.Run("micro-batches", func(t *testing.T) { ddpMicroBatches(t, e) })
}

// ddpEnv is what the data-parallel subtests share: mpirun, kiln built with
// MPI, and the directory of the runs, where "two" is a finished 2-rank run.
type ddpEnv struct{ mpirun, bin, dir string }

// args is kiln train's command line for the runs, into run directory run:
// 540 training images in batches of 64, 9 steps an epoch, the last short
// (28, 14 a rank); 6 epochs, 54 steps.
func (e ddpEnv) args(run string) []string {
	return []string{"train", "--model", "mlp", "--dataset", "mnist", "--subset", "0.01", "--epochs", "6", "--batch", "64",
		"--seed", "1", "--device", "cpu", "--threads", "1", "--no-visuals", "--run-dir", filepath.Join(e.dir, run)}
}

func ddpResume(t *testing.T, e ddpEnv) {
	// Paused after 2 of 6 epochs by 2 ranks: resumed by 2 ranks it ends
	// with the uninterrupted run's bits, by one process within 1e-5.
	for _, run := range []string{"paused2", "paused1"} {
		mpiRun(t, e.mpirun, 2, e.bin, append(e.args(run), "--stop-after-epoch", "2")...)
	}
	mpiRun(t, e.mpirun, 2, e.bin, append(e.args("paused2"), "--resume")...)
	if out, err := exec.Command(e.bin, append(e.args("paused1"), "--resume")...).CombinedOutput(); err != nil {
		t.Fatalf("one process resuming a 2-rank run: %v\n%s", err, out)
	}
	compareWeights(t, filepath.Join(e.dir, "two", "last.safetensors"), filepath.Join(e.dir, "paused2", "last.safetensors"), 0)
	compareMetrics(t, filepath.Join(e.dir, "two"), filepath.Join(e.dir, "paused1"), 1e-5)
	compareWeights(t, filepath.Join(e.dir, "two", "last.safetensors"), filepath.Join(e.dir, "paused1", "last.safetensors"), 1e-5)
	// A finished run: every rank says so and stops.
	out := mpiRun(t, e.mpirun, 2, e.bin, append(e.args("paused2"), "--resume")...)
	if !strings.Contains(out, "nothing to resume") {
		t.Errorf("--resume of a finished run under mpirun:\n%s", out)
	}
}

func ddpCtrlC(t *testing.T, e ddpEnv) {
	// Rank 1 alone gets SIGINT once an epoch has ended (Ctrl-C reaches each
	// rank at its own step): both ranks stop before the same step, rank 0
	// with a checkpoint, and the job ends without MPI_Abort. (Signalling
	// mpirun would make it SIGTERM the ranks and SIGKILL them a second
	// later, a race with the checkpoint on a loaded machine.)
	a := append(e.args("ctrlc"), "--epochs", "1000")
	cmd := exec.Command(e.mpirun, append([]string{"--allow-run-as-root", "--oversubscribe", "-np", "2", e.bin}, a...)...)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(2*time.Minute, func() { cmd.Process.Kill() })
	defer timer.Stop()
	var all strings.Builder
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		all.WriteString(sc.Text() + "\n")
		if strings.Contains(sc.Text(), "epoch done") {
			pid, err := rankPID(e.bin, filepath.Join(e.dir, "ctrlc"), 1)
			if err != nil {
				cmd.Process.Kill()
				t.Fatal(err)
			}
			if err := syscall.Kill(pid, syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	rest, _ := io.ReadAll(pipe)
	all.Write(rest)
	err = cmd.Wait()
	out := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(all.String(), "")
	steps := regexp.MustCompile(`WRN interrupted.* rank=(\d) step=(\d+)`).FindAllStringSubmatch(out, -1)
	if err == nil || len(steps) != 2 || steps[0][2] != steps[1][2] || strings.Contains(out, "MPI_ABORT") {
		t.Fatalf("want both ranks interrupted before the same step, no abort: %v, %v\n%s", err, steps, out)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "ctrlc", "checkpoint.safetensors")); err != nil {
		t.Error(err)
	}
	// Rank 1 says rank 0 wrote the checkpoint, not that it did; rank 0, when
	// mpirun lets its line out before ending the job on rank 1's exit
	// status, says how to resume under mpirun.
	if !strings.Contains(out, "kiln: training interrupted; rank 0 wrote the checkpoint") {
		t.Errorf("rank 1's line lacks who wrote the checkpoint:\n%s", out)
	}
	if strings.Contains(out, "checkpoint written, resume with --resume") &&
		!strings.Contains(out, "(mpirun -np 2 kiln train --run-dir "+filepath.Join(e.dir, "ctrlc")+" --resume)") {
		t.Errorf("rank 0's line lacks the mpirun command that resumes:\n%s", out)
	}
}

func ddpRankFailsAlone(t *testing.T, e ddpEnv) {
	// Only rank 0 opens the run directory: the existing run refuses it
	// while rank 1 waits in a collective; MPI_Abort must end both.
	start := time.Now()
	out, err := runMPIErr(t, e.mpirun, 2, e.bin, e.args("two")...)
	if err == nil || !strings.Contains(out, "kiln: rank 0 of 2:") || !strings.Contains(out, "already holds a run") {
		t.Errorf("a 2-rank run into a finished run's directory: %v, want rank 0's error; output:\n%s", err, out)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("took %v to end", took)
	}
}

func ddpBuiltWithoutMPI(t *testing.T, e ddpEnv) {
	out, err := runMPIErr(t, e.mpirun, 2, kilnBin, e.args("plain")...)
	if err == nil || !strings.Contains(out, mpi.NotBuiltMessage) {
		t.Errorf("a kiln built without MPI under mpirun -np 2: %v, want %q; output:\n%s", err, mpi.NotBuiltMessage, out)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "plain")); err == nil {
		t.Error("it made a run directory")
	}
}

func ddpRanksDisagree(t *testing.T, e ddpEnv) {
	other := filepath.Join(e.dir, "kiln-mpi-other")
	b, err := os.ReadFile(e.bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(other, append(b, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		prog  string
		rank1 []string // rank 1's extra arguments: mpirun's, then kiln's after "--"
		want  string
	}{
		{other, []string{"--", "--lr", "0.05"}, "ranks disagree on the kiln binary"},
		{e.bin, []string{"--", "--lr", "0.02"}, "rank 1: lr: 0.05 → 0.02"},
		// Settings a resume may change, and the buckets' size, must still
		// be every rank's: else ranks wait in different collectives (hang,
		// or a heap overwritten by all-reduces of other sizes).
		{e.bin, []string{"--", "--stop-after-epoch", "1"}, "rank 1: stop_after_epoch: unset → 1"},
		{e.bin, []string{"--", "--micro-batch", "8"}, "rank 1: micro_batch: unset → 8"},
		{e.bin, []string{"--", "--sync-bn"}, "rank 1: sync_bn: unset → true"},
		{e.bin, []string{"-x", "KILN_BUCKET_BYTES=1000", "--"}, "rank 1: $KILN_BUCKET_BYTES: unset → 1000"},
	} {
		// Open MPI's MPMD form: rank 0 one command line, rank 1 another.
		i := slices.Index(tc.rank1, "--")
		mpmd := append(append([]string{"--allow-run-as-root", "--oversubscribe", "-np", "1", e.bin}, e.args("differ")...), "--lr", "0.05", ":", "-np", "1")
		mpmd = append(append(append(mpmd, tc.rank1[:i]...), tc.prog), e.args("differ")...)
		cmd := exec.Command(e.mpirun, append(append(mpmd, "--lr", "0.05"), tc.rank1[i+1:]...)...)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s: %v, want %q; output:\n%s", tc.want, err, tc.want, out)
		}
	}
}

// ddpMicroBatches: ranks that run their shards in micro-batches sum the
// whole shard's gradients (the buckets wait for the last micro-batch), so
// the run is one process's whole-batch run within rounding.
func ddpMicroBatches(t *testing.T, e ddpEnv) {
	mpiRun(t, e.mpirun, 2, e.bin, append(e.args("micro"), "--micro-batch", "8")...)
	compareMetrics(t, filepath.Join(e.dir, "one"), filepath.Join(e.dir, "micro"), 1e-5)
	compareWeights(t, filepath.Join(e.dir, "one", "last.safetensors"), filepath.Join(e.dir, "micro", "last.safetensors"), 1e-5)
}

func ddpBatchIndivisible(t *testing.T, e ddpEnv) {
	a := append(e.args("odd"), "--batch", "63")
	out, err := runMPIErr(t, e.mpirun, 2, e.bin, a...)
	if err == nil || !strings.Contains(out, "--batch 63 is the global batch") {
		t.Errorf("--batch 63 on 2 ranks: %v, want a refusal naming it; output:\n%s", err, out)
	}
}

// runMPIErr runs prog as np ranks, ending it after two minutes at most.
func runMPIErr(t *testing.T, mpirun string, np int, prog string, args ...string) (string, error) {
	t.Helper()
	return mpitesting.Run(t, mpirun, np, 2*time.Minute, prog, args...)
}

func mpiRun(t *testing.T, mpirun string, np int, prog string, args ...string) string {
	t.Helper()
	out, err := runMPIErr(t, mpirun, np, prog, args...)
	if err != nil {
		t.Fatalf("mpirun -np %d kiln %s: %v\n%s", np, strings.Join(args, " "), err, out)
	}
	return out
}

// compareMetrics checks that two runs recorded the same records with losses
// within tol relative.
func compareMetrics(t *testing.T, a, b string, tol float64) {
	t.Helper()
	ra, rb := readMetrics(t, a), readMetrics(t, b)
	if len(ra) != len(rb) || len(ra) == 0 {
		t.Fatalf("%d metrics records against %d", len(ra), len(rb))
	}
	for i := range ra {
		x, y := ra[i], rb[i]
		if x.Split != y.Split || x.Step != y.Step {
			t.Fatalf("record %d: %s at step %d against %s at step %d", i, x.Split, x.Step, y.Split, y.Step)
		}
		if d := math.Abs(x.Loss-y.Loss) / math.Abs(x.Loss); d > tol {
			t.Errorf("%s loss at step %d: %v against %v (%.2g relative)", x.Split, x.Step, x.Loss, y.Loss, d)
		}
	}
}

type metricLine struct {
	Split string  `json:"split"`
	Step  int     `json:"step"`
	Loss  float64 `json:"loss"`
}

func readMetrics(t *testing.T, run string) []metricLine {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(run, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []metricLine
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var m metricLine
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// compareWeights checks every tensor of two weight files: each element
// within tol of the tensor's largest magnitude (tol 0: the same bits).
func compareWeights(t *testing.T, a, b string, tol float64) {
	t.Helper()
	ta, _, err := safetensors.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	tb, _, err := safetensors.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(ta) != len(tb) || len(ta) == 0 {
		t.Fatalf("%d tensors against %d", len(ta), len(tb))
	}
	for name, x := range ta {
		y, ok := tb[name]
		if !ok {
			t.Fatalf("%s missing from %s", name, b)
		}
		xv, yv := x.Values(), y.Values()
		if tol == 0 {
			if !slices.Equal(xv, yv) {
				t.Errorf("%s: the two 2-rank runs' weights differ", name)
			}
			continue
		}
		scale, worst := 0.0, 0.0
		for i := range xv {
			scale = max(scale, math.Abs(xv[i]))
			worst = max(worst, math.Abs(xv[i]-yv[i]))
		}
		if worst > tol*scale {
			t.Errorf("%s: weights differ by %.3g, %.2g of the largest (%.3g)", name, worst, worst/scale, scale)
		}
	}
}
