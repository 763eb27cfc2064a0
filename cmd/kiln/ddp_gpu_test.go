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

// Data-parallel ranks on GPUs (issue 18), run on the CUDA emulator: each
// rank opens the device its index on the machine names (the emulator shows
// KILN_EMU_DEVICES of them), the emulator has no NCCL, so the ranks say so
// and sum the flat gradient buffer through host memory over MPI; they
// train as one process on the emulated GPU does, within 1e-5. Two ranks
// where the machine has one GPU are refused, as is --sync-bn on the GPU.
// (NCCL itself runs only on a real GPU: cuda.TestNCCLOneRank.)
func TestDataParallelGPURanksEmulated(t *testing.T) {
	mpirun := mpitesting.MPIRun(t)
	needMNIST(t)
	bin := kilnWithTags(t, "mpi,cudaemu")
	// kiln info says which build it is: not a real CUDA one.
	if out, err := exec.Command(bin, "info").Output(); err != nil || !strings.Contains(string(out), "build:    cuda emulator") {
		t.Errorf("kiln info of the emulator build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	e := ddpEnv{mpirun: mpirun, bin: bin, dir: dir}
	args := func(run string) []string {
		return append(e.args(run), "--device", "cuda", "--epochs", "1")
	}
	if out, err := exec.Command(bin, args("one")...).CombinedOutput(); err != nil {
		t.Fatalf("one process on the emulated GPU: %v\n%s", err, out)
	}
	t.Setenv("KILN_EMU_DEVICES", "2") // mpirun passes its environment to local ranks
	out := mpiRun(t, mpirun, 2, bin, args("two")...)
	for _, want := range []string{"NCCL is not in use", "the CUDA emulator has none", "device 0", "device 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("the 2-rank output lacks %q:\n%s", want, out)
		}
	}
	compareMetrics(t, filepath.Join(dir, "one"), filepath.Join(dir, "two"), 1e-5)
	compareWeights(t, filepath.Join(dir, "one", "last.safetensors"), filepath.Join(dir, "two", "last.safetensors"), 1e-5)

	out, err := runMPIErr(t, mpirun, 2, bin, append(args("sync"), "--sync-bn")...)
	if err == nil || !strings.Contains(out, "--sync-bn runs on the CPU so far") {
		t.Errorf("--sync-bn on GPU ranks: %v, want a refusal; output:\n%s", err, out)
	}
	// A rank on the CPU (--device auto on a node whose GPU cannot be used)
	// beside one on a GPU is refused at once; it waited forever, each kind
	// of rank in its own first collective.
	mixed := append(append([]string{"--allow-run-as-root", "--oversubscribe", "-x", "KILN_EMU_DEVICES", "-np", "1", bin}, args("mixed")...), ":", "-np", "1", bin)
	mixed = append(append(mixed, e.args("mixed")...), "--device", "cpu", "--epochs", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mout, err := exec.CommandContext(ctx, mpirun, mixed...).CombinedOutput()
	if err == nil || ctx.Err() != nil || !strings.Contains(string(mout), `ranks disagree on the device`) || !strings.Contains(string(mout), `rank 1 has "cpu"`) {
		t.Errorf("a GPU rank and a CPU rank: %v (context %v), want a refusal naming the devices; output:\n%s", err, ctx.Err(), mout)
	}
	t.Setenv("KILN_EMU_DEVICES", "1")
	out, err = runMPIErr(t, mpirun, 2, bin, args("shared")...)
	if err == nil || !strings.Contains(out, "2 ranks on this machine and 1 GPUs") {
		t.Errorf("two ranks on one GPU: %v, want a refusal; output:\n%s", err, out)
	}
}

// Two ranks on two real GPUs with NCCL (issue 18's GPU test): kiln-cuda
// built with MPI, one GPU a rank, the gradients summed by NCCL, the run
// within 1e-5 of one process on one GPU. Skips, saying why, unless this
// machine has mpirun and two GPUs (nvidia-smi); NCCL comes from the
// loader's path or KILN_NCCL_LIBRARY.
func TestDataParallelTwoGPUs(t *testing.T) {
	mpirun := mpitesting.MPIRun(t)
	needMNIST(t)
	out, err := exec.Command("nvidia-smi", "-L").Output()
	if gpus := strings.Count(string(out), "GPU "); err != nil || gpus < 2 {
		t.Skipf("skipped: two GPUs needed (nvidia-smi -L: %d, %v)", gpus, err)
	}
	dir := t.TempDir()
	bin := kilnWithTags(t, "mpi,cuda")
	e := ddpEnv{mpirun: mpirun, bin: bin, dir: dir}
	args := func(run string) []string { return append(e.args(run), "--device", "cuda", "--epochs", "2") }
	if out, err := exec.Command(bin, args("one")...).CombinedOutput(); err != nil {
		t.Fatalf("one process on one GPU: %v\n%s", err, out)
	}
	log := mpiRun(t, mpirun, 2, bin, args("two")...)
	if !strings.Contains(log, "gradients summed on the GPUs by NCCL") || !strings.Contains(log, "GPU 1") {
		t.Errorf("the ranks did not use NCCL on two GPUs:\n%s", log)
	}
	compareMetrics(t, filepath.Join(dir, "one"), filepath.Join(dir, "two"), 1e-5)
	compareWeights(t, filepath.Join(dir, "one", "last.safetensors"), filepath.Join(dir, "two", "last.safetensors"), 1e-5)
}
