package engine

// What every GPU launcher (engine/<family>_cuda.go) shares: the element-wise
// launch shape, the KILN_CUDA_CHECK rerun on the CPU (runCUDA), and what the
// open device reports. The kernels themselves are declared in kernels_gen.go,
// which internal/kernelgen writes from kernels/*.cu:
//
//go:generate go run ../internal/kernelgen

import (
	"fmt"
	"math"
	"os"

	"github.com/kiln-ml/kiln/cuda"
)

// Element-wise kernels use 256 threads and at most this many blocks, looping
// with a grid stride beyond.
const (
	eltBlock     = 256
	eltMaxBlocks = 4096
)

func launchElt(k *cuda.Kernel, n int, a *cuda.Args) error {
	return cuda.Launch(k, cuda.D1(cuda.Blocks(n, eltBlock, eltMaxBlocks)), cuda.D1(eltBlock), 0, a)
}

// checkCUDA is the debug switch KILN_CUDA_CHECK=1: every op that runs on the
// GPU runs again on the CPU on copies of the same inputs, and the two
// results must agree (atol 1e-3 + rtol 1e-3·|cpu|) or the op fails, naming
// the tensor and the worst element. Slow; for hunting a wrong kernel.
var checkCUDA = os.Getenv("KILN_CUDA_CHECK") == "1"

// SetCUDACheck turns the GPU-against-CPU check on or off (see checkCUDA).
func SetCUDACheck(on bool) { checkCUDA = on }

// hostCopy maps each argument of runCUDA to its host copy (nil to nil), so
// a CPU rerun names the tensors it takes, as the GPU closure does, instead of
// counting positions. A tensor that is not an argument has no copy: asking
// for one is a bug in the launcher, and panics.
type hostCopy func(*Tensor) *Tensor

// all is the host copies of ts, in order.
func (host hostCopy) all(ts []*Tensor) []*Tensor {
	out := make([]*Tensor, len(ts))
	for i, t := range ts {
		out[i] = host(t)
	}
	return out
}

// runCUDA runs an op's GPU implementation (every launcher in
// engine/<family>_cuda.go goes through it; the entry files do not call it).
// With the check on, it also runs cpu (the same exported op, which
// dispatches to the CPU for CPU tensors) on host copies of args and compares
// every argument afterwards: outputs must match, inputs must be unchanged on
// both. Arguments that are one tensor (an in-place activation, dx = dout)
// share one host copy, so an in-place call is checked as the in-place call it
// is rather than as two copies of which one changed.
func runCUDA(op string, gpu func() error, cpu func(host hostCopy) error, args ...*Tensor) error {
	if !checkCUDA {
		return gpu()
	}
	var uniq []*Tensor // distinct arguments, each with one host copy below
	var first []int    // the index in args where each one first appears
	at := make([]int, len(args))
	for i, a := range args {
		at[i] = -1
		if a == nil {
			continue
		}
		for j, u := range uniq {
			if u == a || (sameData(u, a) && sameShape(u.shape, a.shape)) {
				at[i] = j
				break
			}
		}
		if at[i] < 0 {
			at[i] = len(uniq)
			uniq = append(uniq, a)
			first = append(first, i)
		}
	}
	copies := make([]*Tensor, len(uniq))
	for j, u := range uniq {
		copies[j] = u.host().Clone()
		// The rerun multiplies as the GPU did where the CPU can (bf16 on
		// AVX512_BF16); TF32, which no CPU has, reruns in fp32.
		if u.prec.Check(CPU) == nil {
			copies[j].prec = u.prec
		}
	}
	hosts := make([]*Tensor, len(args))
	for i, j := range at {
		if j >= 0 {
			hosts[i] = copies[j]
		}
	}
	if err := gpu(); err != nil {
		return err
	}
	host := func(t *Tensor) *Tensor {
		if t == nil {
			return nil
		}
		for i, a := range args {
			if a == t {
				return hosts[i]
			}
		}
		panic(op + ": KILN_CUDA_CHECK: the CPU rerun asked for a tensor that is not an argument")
	}
	if err := cpu(host); err != nil {
		return fmt.Errorf("%s: KILN_CUDA_CHECK: the CPU rerun failed: %w", op, err)
	}
	for j, a := range uniq {
		i := first[j]
		got, want := a.host(), copies[j]
		if got.err != nil {
			return fmt.Errorf("%s: KILN_CUDA_CHECK: %w", op, got.err)
		}
		worst, bad := 0.0, -1
		for j := range got.f32 {
			g, w := float64(got.f32[j]), want.At(j)
			d := math.Abs(g - w)
			if d > 1e-3+1e-3*math.Abs(w) || (g != g) != (w != w) {
				if d > worst || bad < 0 {
					worst, bad = d, j
				}
			}
		}
		if bad >= 0 {
			return fmt.Errorf("%s: KILN_CUDA_CHECK: argument %d %v differs from the CPU: element %d gpu=%g cpu=%g", op, i, a.shape, bad, got.f32[bad], want.At(bad))
		}
	}
	return nil
}

// DeviceMemory returns the free and total bytes of the open GPU (zeros
// when none is open).
func DeviceMemory() (free, total int64) {
	if !cuda.Ready() {
		return 0, 0
	}
	i := cuda.Device()
	return i.MemoryFree, i.MemoryTotal
}

// CUDADeviceIsReal reports whether CUDA tensors live on a real GPU (false
// under the emulator and where no device is open).
func CUDADeviceIsReal() bool { return cuda.Ready() && cuda.Device().Backend == "cuda" }
