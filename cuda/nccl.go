package cuda

import (
	"errors"
	"os"
)

// NCCL sums the gradients of data-parallel ranks on their GPUs. It is
// loaded at run time (dlopen), like the driver is found at run time, so
// neither build needs it to link or start: only a run of several GPU ranks
// opens it. $KILN_NCCL_LIBRARY names the library where the loader's path
// does not have it (e.g. a PyTorch environment's
// site-packages/nvidia/nccl/lib/libnccl.so.2).

// ErrNoNCCL: this process cannot use NCCL (no GPU backend, the emulator, or
// the library did not load); the error that wraps it says which.
var ErrNoNCCL = errors.New("NCCL is not available")

// NCCLID is the token rank 0 makes and every rank passes to NewNCCLComm; it
// travels to the other ranks over MPI.
type NCCLID [128]byte

// NCCLComm is one rank's place in an NCCL communicator.
type NCCLComm struct {
	handle uintptr
}

// ncclLibrary is the library LoadNCCL opens.
func ncclLibrary() string {
	if p := os.Getenv("KILN_NCCL_LIBRARY"); p != "" {
		return p
	}
	return "libnccl.so.2"
}

// Reproducible sums: NCCL picks its algorithm and protocol by message size
// and topology, and a ring and a tree add in different orders. Pinning
// both (unless the user set them) makes the same ranks on the same machines
// give the same bits run after run; the ring with the Simple protocol costs
// latency on small messages, little on a gradient buffer of megabytes.
var ncclPinned = [][2]string{{"NCCL_ALGO", "Ring"}, {"NCCL_PROTO", "Simple"}}

func pinNCCLAlgorithm() error {
	for _, kv := range ncclPinned {
		if _, set := os.LookupEnv(kv[0]); set {
			continue
		}
		if err := os.Setenv(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}
