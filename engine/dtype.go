package engine

import "fmt"

// DType is a tensor's element type.
type DType uint8

const (
	// Float32 is the training type.
	Float32 DType = iota + 1
	// Float64 is the reference type of the gradient checks.
	Float64
)

func (d DType) String() string {
	switch d {
	case Float32:
		return "float32"
	case Float64:
		return "float64"
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Size is the number of bytes of one element.
func (d DType) Size() int {
	if d == Float64 {
		return 8
	}
	return 4
}

// Float is the set of element types the CPU kernels are written for.
type Float interface{ ~float32 | ~float64 }
