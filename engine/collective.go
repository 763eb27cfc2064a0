package engine

import (
	"fmt"

	"github.com/kiln-ml/kiln/cuda"
)

// AllreduceSumNCCL replaces a float32 device tensor on every rank of comm by
// its sum over the ranks, in place on the GPU: data-parallel training's
// gradient sum. (CPU tensors are MPI's, through their host slices.)
func AllreduceSumNCCL(comm *cuda.NCCLComm, t *Tensor) error {
	if t.device != CUDA || t.dtype != Float32 {
		return fmt.Errorf("engine.AllreduceSumNCCL: a %v tensor on %v (NCCL sums float32 device tensors)", t.dtype, t.device)
	}
	if t.err != nil {
		return fmt.Errorf("engine.AllreduceSumNCCL: %w", t.err)
	}
	if t.Released() {
		return fmt.Errorf("engine.AllreduceSumNCCL: the tensor's device memory was released")
	}
	return comm.AllreduceSumFloat32(t.dptr(), t.Len())
}
