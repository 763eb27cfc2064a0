package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/mpi/mpitesting"
)

// Issue 18's accuracy bar under real mpirun ranks: LeNet on all of MNIST,
// trained by 2 ranks for 3 epochs, reaches 99.0% test accuracy, and so does
// a 2-rank run paused after epoch 1 and resumed by one process to epoch 3.
// The bar is the one the issue sets; a data-parallel step that got the
// gradient average or the data shards wrong lands below it.
func TestDataParallelAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: trains LeNet on all of MNIST twice (about 30 s on two cores)")
	}
	mpirun := mpitesting.MPIRun(t)
	needMNIST(t)
	bin := kilnMPI(t)
	dir := t.TempDir()
	args := func(run string) []string {
		return []string{"train", "--model", "lenet", "--dataset", "mnist", "--epochs", "3", "--batch", "64",
			"--seed", "1", "--device", "cpu", "--threads", "1", "--no-visuals", "--run-dir", filepath.Join(dir, run)}
	}

	start := time.Now()
	mpiRun(t, mpirun, 2, bin, args("two")...)
	t.Logf("2 ranks, 3 epochs: %v", time.Since(start).Round(time.Millisecond))
	checkAccuracy(t, filepath.Join(dir, "two"), 2)

	start = time.Now()
	mpiRun(t, mpirun, 2, bin, append(args("resumed"), "--stop-after-epoch", "1")...)
	t.Logf("2 ranks, epoch 1 of 3: %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, kilnBin, append(args("resumed"), "--resume")...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "resumed from checkpoint") {
		t.Fatalf("one process resuming the paused 2-rank run: %v\n%s", err, out)
	}
	t.Logf("1 process, epochs 2 and 3: %v", time.Since(start).Round(time.Millisecond))
	checkAccuracy(t, filepath.Join(dir, "resumed"), 0)
}

// checkAccuracy reads run's summary: 3 epochs run by ranks ranks (0: one
// process, which summary.json leaves out) and a test accuracy of 99.0% or
// more.
func checkAccuracy(t *testing.T, run string, ranks int) {
	t.Helper()
	s := readSummary(t, run)
	if s.EpochsRun != 3 || s.WorldSize != ranks {
		t.Errorf("%s: %d epochs by world size %d, want 3 by %d", filepath.Base(run), s.EpochsRun, s.WorldSize, ranks)
	}
	switch {
	case s.TestAccuracy == nil:
		t.Errorf("%s: summary.json has no test_accuracy", filepath.Base(run))
	case *s.TestAccuracy < 0.990:
		t.Errorf("%s: test accuracy %.2f%%, want at least 99.0%%", filepath.Base(run), 100**s.TestAccuracy)
	default:
		t.Logf("%s: test accuracy %.2f%%", filepath.Base(run), 100**s.TestAccuracy)
	}
}
