package engine

import (
	"errors"
	"fmt"
	"strings"
)

// Device says where a tensor's data lives and so which backend runs its ops.
type Device uint8

const (
	// CPU is the reference backend, always present.
	CPU Device = iota
	// CUDA is an NVIDIA GPU, present in builds with the cuda tag.
	CUDA
)

func (d Device) String() string {
	switch d {
	case CPU:
		return "cpu"
	case CUDA:
		return "cuda"
	}
	return fmt.Sprintf("Device(%d)", uint8(d))
}

// ParseDevice reads "cpu", "cuda" or "auto". Auto is resolved by the caller
// once at start-up (see ResolveDevice).
func ParseDevice(s string) (Device, bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "cpu":
		return CPU, false, nil
	case "cuda", "gpu":
		return CUDA, false, nil
	case "auto", "":
		return CPU, true, nil
	}
	return CPU, false, fmt.Errorf("unknown device %q (want cpu, cuda or auto)", s)
}

// agree checks that every non-nil tensor is on the same device with the same
// dtype, and returns them; a device other than the CPU is an error
// (ErrNoKernel). Ops with a CUDA path call agreeDev instead.
func agree(op string, ts ...*Tensor) (Device, DType, error) {
	var dev Device
	var dt DType
	first := true
	for _, t := range ts {
		if t == nil {
			continue
		}
		if t.err != nil {
			return t.device, t.dtype, fmt.Errorf("%s: %w", op, t.err)
		}
		if first {
			dev, dt, first = t.device, t.dtype, false
			continue
		}
		if t.dtype != dt {
			return dev, dt, &ShapeError{Op: op, Msg: fmt.Sprintf("mixed dtypes %v and %v", dt, t.dtype)}
		}
		if t.device != dev {
			return dev, dt, &ShapeError{Op: op, Msg: fmt.Sprintf("tensors on %v and %v", dev, t.device)}
		}
	}
	if first {
		return dev, dt, &ShapeError{Op: op, Msg: "no tensors"}
	}
	if dev != CPU {
		return dev, dt, fmt.Errorf("%s on %v: %w", op, dev, ErrNoKernel)
	}
	return dev, dt, nil
}

// agreeDev is agree for ops that have a CUDA implementation: CUDA tensors
// pass (float32 only, which NewOn guarantees) and the op switches on the
// device it returns.
func agreeDev(op string, ts ...*Tensor) (Device, DType, error) {
	dev, dt, err := agree(op, ts...)
	if dev == CUDA && errors.Is(err, ErrNoKernel) {
		return dev, dt, nil
	}
	return dev, dt, err
}
