package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/mpi"
	"github.com/kiln-ml/kiln/trainer"
)

// The MPI world is what the trainer asks of one (both builds: without the
// mpi build tag it is one process), and it can overlap the gradients'
// all-reduce with the backward pass.
var (
	_ trainer.World      = mpiWorld{}
	_ trainer.AsyncWorld = mpiWorld{}
)

// mpiWorld is the MPI world as the trainer takes it.
type mpiWorld struct{ *mpi.World }

func (w mpiWorld) StartAllreduceSumFloat32(buf []float32) (trainer.Pending, error) {
	p, err := w.IallreduceSumFloat32(buf)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// bucketBytes is $KILN_BUCKET_BYTES, the size of the gradient buckets whose
// all-reduce starts during the backward pass on CPU ranks (0 or unset:
// Kiln's default; negative: one all-reduce after the pass), for measuring
// the overlap.
func bucketBytes() (int, error) {
	s := os.Getenv("KILN_BUCKET_BYTES")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, usageError{fmt.Errorf("$KILN_BUCKET_BYTES=%q: want a whole number of bytes", s)}
	}
	return n, nil
}

// joinWorld joins the ranks that mpirun (or srun) started with this one, for
// data-parallel training; outside a launcher, or as its only process, it
// returns nil and touches no MPI. A build without MPI started as one of
// several ranks is refused (mpi.Init says how to build one that can).
func joinWorld() (*mpi.World, error) {
	if l, ok := mpi.Launched(); !ok || l.Size <= 1 {
		return nil, nil
	}
	w, err := mpi.Init()
	if err != nil {
		return nil, err
	}
	// Ranks running different kilns are refused (the trainer checks the
	// configuration and the data).
	sum, err := binaryHash()
	if err == nil {
		err = w.Agree("the kiln binary (every rank must run the same build: a kiln beside a kiln-cuda, as a node without the NVIDIA driver keeps running, is another)", sum)
	}
	if err != nil {
		return nil, endWorld(w, err)
	}
	return w, nil
}

// binaryHash is the SHA-256 of this executable.
func binaryHash() ([]byte, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(exe)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// shareFinished tells every rank whether rank 0 found the run directory's
// run finished (--resume of a run that has ended), when it is nothing to
// train; rank 0 passes what it found, the others false.
func shareFinished(w *mpi.World, finished bool) (bool, error) {
	b, err := w.BroadcastBytes([]byte{btoi(finished)}, 0)
	return err == nil && len(b) == 1 && b[0] == 1, err
}

func btoi(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// useWorld hands the world to the trainer: --threads defaults to the cores
// divided among the ranks on this machine, every log line carries the
// rank, and ranks on GPUs sum through NCCL (gpuWorld). The caller calls
// leave when training ends.
func useWorld(w *mpi.World, c trainer.Config, tr *trainer.Trainer) (leave func() error, err error) {
	if w == nil {
		return func() error { return nil }, nil
	}
	tr.World = mpiWorld{w}
	if tr.BucketBytes, err = bucketBytes(); err != nil {
		return nil, err
	}
	if c.Threads == 0 {
		engine.SetThreads(max(1, runtime.NumCPU()/w.LocalSize()))
	}
	tr.Log = tr.Log.With().Int("rank", w.Rank()).Logger()
	// Before any collective the two kinds of rank make differently (NCCL's
	// set-up on a GPU, the configuration's agreement on a CPU): a node whose
	// --device auto fell back to the CPU would otherwise wait forever.
	if err := w.Agree("the device (--device auto falls back to the CPU where a GPU cannot be used)", []byte(tr.Device().String())); err != nil {
		return nil, err
	}
	if tr.Device() != engine.CUDA || w.Size() == 1 {
		return func() error { return nil }, nil
	}
	world, leave, err := gpuWorld(w, tr.Log)
	if err != nil {
		return nil, err
	}
	tr.World = world
	return leave, nil
}

// leaveTogether runs leave as its caller returns, when the ranks end alike
// (done, or interrupted before the same step): after an error endWorld
// aborts the job, and leaving NCCL could wait for a rank that has gone. Its
// error becomes the caller's unless the caller already has one.
func leaveTogether(err *error, leave func() error) {
	if *err != nil && !errors.Is(*err, trainer.ErrInterrupted) {
		return
	}
	if lerr := leave(); *err == nil {
		*err = lerr
	}
}

// endWorld ends this rank's part of the run: MPI_Finalize after an end
// every rank shares (done, interrupted), MPI_Abort after an error, which
// may be this rank's alone while the others wait in a collective for it
// (Finalize would wait with them): the error is printed first, naming the
// rank, and mpirun ends every rank.
func endWorld(w *mpi.World, err error) error {
	if err == nil || errors.Is(err, trainer.ErrInterrupted) {
		if ferr := w.Finalize(); err == nil {
			return ferr
		}
		return err
	}
	fmt.Fprintf(os.Stderr, "kiln: rank %d of %d: %v\n", w.Rank(), w.Size(), err)
	w.Abort(exitCode(err))
	return err // not reached
}

// abortOnPanic ends the job from a rank that panicked (p, recover()'s value
// in endWorld's deferred caller): its deferred Finalize would wait for the
// others, which wait in a collective for it, and the job hung for good (a
// nil dereference on rank 1 did).
func abortOnPanic(w *mpi.World, p any) {
	if p == nil {
		return
	}
	fmt.Fprintf(os.Stderr, "kiln: rank %d of %d: panic: %v\n%s", w.Rank(), w.Size(), p, debug.Stack())
	w.Abort(2)
}

// rankFault is a fault-injection build's (KILN_FAULT=panicrank:R) way into a
// rank's training; nothing in others.
var rankFault = func(rank int) {}

// rankLogger is the console logger of a rank other than 0, which writes no
// run directory.
func rankLogger() zerolog.Logger { return logger() }

// oneProcess refuses every command but train and bench (the step timing of
// data-parallel training) when the launcher started this process as one of
// several: each rank would run its own tune, lr-find or export over the
// same files.
func oneProcess(cmd *cobra.Command, _ []string) error {
	if cmd.Name() == "train" || cmd.CommandPath() == "kiln bench" {
		return nil
	}
	if l, ok := mpi.Launched(); ok && l.Size > 1 {
		name := strings.TrimPrefix(cmd.CommandPath(), "kiln ")
		return usageError{fmt.Errorf("%s runs as one process, but mpirun or srun started it as one of %d: only kiln train (and kiln bench, timing its steps) runs data parallel; start it without the launcher",
			name, l.Size)}
	}
	return nil
}
