package main

import (
	"fmt"
	"os"

	"github.com/rs/zerolog"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/mpi"
	"github.com/kiln-ml/kiln/trainer"
)

// Data-parallel ranks on GPUs: one GPU per rank, chosen by the rank's index
// on its machine, and the gradients summed by NCCL where the GPUs are
// (through host memory over MPI, said in the log, where NCCL is not).

// wantsGPU reports whether a --device value (with $KILN_DEVICE) may run on
// the GPU: cuda or auto.
func wantsGPU(flag string) bool {
	s, err := deviceRequest(flag)
	if err != nil {
		return false // resolveDevice reports it
	}
	dev, auto, _ := engine.ParseDevice(s)
	return dev == engine.CUDA || auto
}

// handOverBeforeMPI is the plain build's hand-over to kiln-cuda (device.go)
// for a rank, made before MPI starts: a process must not replace itself
// once it has joined the ranks. It returns when there is nothing to hand
// over to; resolveDevice says why later.
func handOverBeforeMPI(flag string) {
	if l, ok := mpi.Launched(); ok && l.Size > 1 && !cuda.Built() && wantsGPU(flag) {
		handOverToCUDA()
	}
}

// pickGPU chooses this rank's GPU before the device opens: its index among
// the ranks on its machine, so that no two ranks share a GPU. A launcher
// that shows each rank one GPU of its own (CUDA_VISIBLE_DEVICES, as Slurm's
// --gpus-per-task does) leaves it device 0.
func pickGPU(w *mpi.World, flag string) error {
	if w == nil || !cuda.Built() || !wantsGPU(flag) {
		return nil
	}
	n, err := cuda.DeviceCount()
	if err != nil {
		return nil // no GPU: auto runs on the CPU, cuda says why when it opens
	}
	switch size := w.LocalSize(); {
	case n >= size:
		return cuda.SelectDevice(w.LocalRank())
	case n == 1 && os.Getenv("CUDA_VISIBLE_DEVICES") != "":
		return cuda.SelectDevice(0)
	default:
		return usageError{fmt.Errorf("%d ranks on this machine and %d GPUs: each rank needs a GPU of its own (start at most %d ranks a machine, or use --device cpu)",
			size, n, n)}
	}
}

// ncclWorld is the MPI world whose ranks sum device tensors with NCCL.
type ncclWorld struct {
	*mpi.World
	comm *cuda.NCCLComm
}

func (w ncclWorld) AllreduceSumTensor(t *engine.Tensor) error {
	return engine.AllreduceSumNCCL(w.comm, t)
}

// gpuWorld is the world a rank on the GPU trains in: NCCL's when every rank
// can load it, the MPI world (gradients through host memory) when one
// cannot, which every rank logs. close leaves the communicator.
func gpuWorld(w *mpi.World, log zerolog.Logger) (world trainer.World, close func() error, err error) {
	version, loadErr := cuda.LoadNCCL()
	missing := []float64{0}
	if loadErr != nil {
		missing[0] = 1
	}
	if err := w.AllreduceSumFloat64(missing); err != nil {
		return nil, nil, err
	}
	if missing[0] > 0 {
		why := "another rank could not load it"
		if loadErr != nil {
			why = loadErr.Error()
		}
		log.Warn().Str("nccl", why).Msg("NCCL is not in use: the gradients are summed through host memory over MPI (slower; install NCCL or set KILN_NCCL_LIBRARY)")
		return w, func() error { return nil }, nil
	}
	var id cuda.NCCLID
	if w.Rank() == 0 {
		if id, err = cuda.NewNCCLID(); err != nil {
			return nil, nil, err
		}
	}
	b, err := w.BroadcastBytes(id[:], 0)
	if err != nil {
		return nil, nil, err
	}
	copy(id[:], b)
	comm, err := cuda.NewNCCLComm(id, w.Rank(), w.Size())
	if err != nil {
		return nil, nil, err
	}
	log.Info().Str("nccl", version).Str("NCCL_ALGO", os.Getenv("NCCL_ALGO")).Str("NCCL_PROTO", os.Getenv("NCCL_PROTO")).
		Msg("gradients summed on the GPUs by NCCL")
	return ncclWorld{w, comm}, comm.Close, nil
}
