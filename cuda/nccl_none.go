//go:build !(cuda && cgo)

package cuda

import "fmt"

// Without the real GPU backend there is no NCCL to run: the plain build
// has no GPU, and the emulator's device memory is host memory that NCCL
// cannot reach (its ranks sum through MPI).

func noNCCL() error {
	if newBackend == nil {
		return fmt.Errorf("%w: %w", ErrNoNCCL, ErrNotBuilt)
	}
	return fmt.Errorf("%w: the CUDA emulator has none (its ranks sum through host memory)", ErrNoNCCL)
}

// LoadNCCL says why this build has no NCCL.
func LoadNCCL() (string, error) { return "", noNCCL() }

// NewNCCLID says why this build has no NCCL.
func NewNCCLID() (NCCLID, error) { return NCCLID{}, noNCCL() }

// NewNCCLComm says why this build has no NCCL.
func NewNCCLComm(NCCLID, int, int) (*NCCLComm, error) { return nil, noNCCL() }

// AllreduceSumFloat32 is not reached in this build (no communicator).
func (c *NCCLComm) AllreduceSumFloat32(Ptr, int) error { return noNCCL() }

// Close has nothing to close in this build.
func (c *NCCLComm) Close() error { return nil }
