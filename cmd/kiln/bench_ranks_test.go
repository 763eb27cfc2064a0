package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/bench"
	"github.com/kiln-ml/kiln/mpi"
	"github.com/kiln-ml/kiln/mpi/mpitesting"
)

// kiln bench under mpirun -np 2 (kiln built with MPI) times data-parallel
// steps: rank 0 alone prints one JSON line, with the ranks, the all-reduce's
// share of the time and its bytes, and the global batch's images/s; a global
// batch the ranks cannot share is refused. Skips without mpirun.
func TestBenchTwoRanks(t *testing.T) {
	mpirun := mpitesting.MPIRun(t)
	bin := filepath.Join(t.TempDir(), "kiln-mpi")
	build := exec.Command(goTool(), "build", "-tags", "mpi", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags mpi: %v\n%s", err, out)
	}
	args := []string{"bench", "--model", "lenet", "--batch", "16", "--threads", "1",
		"--steps", "5", "--warmup", "2", "--seconds", "0.2", "--json"}
	stdout, stderr, err := mpirunSplit(t, mpirun, 2, bin, args...)
	if err != nil {
		t.Fatalf("mpirun -np 2 kiln %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	m := oneJSONLine(t, stdout) // one line: rank 1 prints nothing
	if number(t, m, "ranks") != 2 || number(t, m, "batch") != 16 || number(t, m, "threads") != 1 {
		t.Errorf("ranks, batch, threads: %v", m)
	}
	if s := number(t, m, "comm_share"); !(s > 0 && s < 1) {
		t.Errorf("comm_share %v, want within (0, 1)", s)
	}
	if b := number(t, m, "allreduce_bytes_per_step"); b != 4*number(t, m, "params") {
		t.Errorf("allreduce_bytes_per_step %v, want 4 bytes a parameter", b)
	}
	steps, sec, ips := number(t, m, "steps"), number(t, m, "seconds"), number(t, m, "train_images_per_sec")
	if !(ips > 0) || steps < 5 || ips < 0.99*steps*16/sec || ips > 1.01*steps*16/sec {
		t.Errorf("%v steps of the global batch 16 in %v s: %v images/s", steps, sec, ips)
	}

	// As text, rank 0 says the ranks and the all-reduce's share too.
	text := args[:len(args)-1]
	if stdout, stderr, err := mpirunSplit(t, mpirun, 2, bin, text...); err != nil || !strings.Contains(stdout, "2 ranks: the all-reduce ") {
		t.Errorf("mpirun -np 2 kiln %s: %v, stdout %q\n%s", strings.Join(text, " "), err, stdout, stderr)
	}

	t.Run("suite", func(t *testing.T) { benchSuiteRanks(t, bin) })

	odd := []string{"bench", "--model", "lenet", "--batch", "15", "--threads", "1", "--json"}
	stdout, stderr, err = mpirunSplit(t, mpirun, 2, bin, odd...)
	if err == nil || !strings.Contains(stderr, "--batch 15 is the global batch") || stdout != "" {
		t.Errorf("--batch 15 on 2 ranks: %v, stdout %q; want a refusal naming it; stderr:\n%s", err, stdout, stderr)
	}

	// Ranks given other settings are refused, naming them: they summed
	// gradient buffers of other lengths (MPI_ERR_TRUNCATE, a heap
	// overwritten).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rank := func(model string) []string {
		return []string{"-np", "1", bin, "bench", "--model", model, "--batch", "16", "--threads", "1", "--steps", "2", "--warmup", "1", "--seconds", "0.1"}
	}
	mpmd := append(append([]string{"--allow-run-as-root", "--oversubscribe"}, rank("mlp")...), append([]string{":"}, rank("lenet")...)...)
	out, err := exec.CommandContext(ctx, mpirun, mpmd...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `rank 1: model: "mlp" → "lenet"`) {
		t.Errorf("ranks benchmarking other models: %v, want a refusal naming the model; output:\n%s", err, out)
	}
}

// benchSuiteRanks checks the suite's ranks scan: with a kiln built with MPI
// it measures 1 and 2 ranks, with one built without it says why not.
func benchSuiteRanks(t *testing.T, mpiBin string) {
	for _, tc := range []struct {
		name, bin string
	}{{"MPI", mpiBin}, {"plain", kilnBin}} {
		out := filepath.Join(t.TempDir(), "results")
		cmd := exec.Command(tc.bin, "bench", "suite", "--quick", "--no-torch", "--sections", "scaling", "--out", out, "--name", "m")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: kiln bench suite: %v\n%s", tc.name, err, b)
		}
		found, _ := filepath.Glob(filepath.Join(out, "m-*-"+time.Now().UTC().Format("2006-01-02")+"-quick.json"))
		if len(found) != 1 {
			t.Fatalf("%s: want one report, found %v", tc.name, found)
		}
		b, err := os.ReadFile(found[0])
		if err != nil {
			t.Fatal(err)
		}
		var rep bench.Report
		if err := json.Unmarshal(b, &rep); err != nil || rep.Scaling == nil {
			t.Fatalf("%s: the report has no scaling section (%v)", tc.name, err)
		}
		sc := rep.Scaling
		if tc.bin == kilnBin {
			if len(sc.Ranks) != 0 || !strings.Contains(sc.RanksSkipped, mpi.NotBuiltMessage) {
				t.Errorf("plain kiln: ranks %v, skipped %q; want the scan skipped for want of MPI", sc.Ranks, sc.RanksSkipped)
			}
			continue
		}
		if sc.RanksSkipped != "" || len(sc.Ranks) != 1 || len(sc.Ranks[0].Points) != 2 {
			t.Fatalf("kiln with MPI: ranks %+v, skipped %q; want lenet at 1 and 2 ranks", sc.Ranks, sc.RanksSkipped)
		}
		one, two := sc.Ranks[0].Points[0], sc.Ranks[0].Points[1]
		if one.Ranks != 1 || !(one.Kiln > 0) || two.Ranks != 2 || !(two.Kiln > 0) || !(two.CommShare > 0 && two.CommShare < 1) {
			t.Errorf("kiln with MPI: 1 rank %+v, 2 ranks %+v", one, two)
		}
	}
}

// mpirunSplit runs prog as np ranks with their standard output and error
// apart, failing t after two minutes.
func mpirunSplit(t *testing.T, mpirun string, np int, prog string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, mpirun, append([]string{"--allow-run-as-root", "--oversubscribe",
		"-np", strconv.Itoa(np), prog}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("mpirun -np %d kiln %s still running after 2 minutes:\n%s", np, strings.Join(args, " "), e.String())
	}
	return o.String(), e.String(), err
}
