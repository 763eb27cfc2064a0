package engine

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/kiln-ml/kiln/cuda"
)

// The GPU side of arith.go, Tensor.Fill and RoundBF16 (bf16.go):
// kernels/arith.cu.

func addCUDA(out, a, b *Tensor) error {
	n := a.Len()
	return runCUDA("Add", func() error {
		var args cuda.Args
		return launchElt(kern.add_f32, n, args.Ptr(out.dptr()).Ptr(a.dptr()).Ptr(b.dptr()).I64(int64(n)))
	}, func(host hostCopy) error { return Add(host(out), host(a), host(b)) }, out, a, b)
}

// scaleCUDA, like fillCUDA and sumSquaresCUDA, runs without the
// KILN_CUDA_CHECK rerun, as Scale did before its launch moved here: moving
// the launch was not to change what KILN_CUDA_CHECK=1 checks.
func scaleCUDA(t *Tensor, s float64) error {
	var args cuda.Args
	if err := launchElt(kern.scale_f32, t.Len(), args.Ptr(t.dptr()).F32(float32(s)).I64(int64(t.Len()))); err != nil {
		return fmt.Errorf("Scale %v: %w", t.shape, err)
	}
	return nil
}

func addScaledCUDA(dst, src *Tensor, alpha float64) error {
	n := dst.Len()
	return runCUDA("AddScaled", func() error {
		var args cuda.Args
		return launchElt(kern.axpy_f32, n, args.Ptr(dst.dptr()).Ptr(src.dptr()).F32(float32(alpha)).I64(int64(n)))
	}, func(host hostCopy) error { return AddScaled(host(dst), host(src), alpha) }, dst, src)
}

func fillCUDA(t *Tensor, v float32) error {
	var a cuda.Args
	return launchElt(kern.fill_f32, t.Len(), a.Ptr(t.dptr()).F32(v).I64(int64(t.Len())))
}

// sumSquaresCUDA reduces in two fixed stages (per block on the device, the
// block partials in order on the host), so the result is the same every run.
func sumSquaresCUDA(t *Tensor) (float64, error) {
	n := t.Len()
	if n == 0 {
		return 0, nil
	}
	blocks := cuda.Blocks(n, eltBlock, 256)
	partial, err := cuda.Alloc(int64(4 * blocks))
	if err != nil {
		return 0, err
	}
	defer cuda.Free(partial, int64(4*blocks))
	var a cuda.Args
	if err := cuda.Launch(kern.sum_squares_f32, cuda.D1(blocks), cuda.D1(eltBlock), 0, a.Ptr(partial).Ptr(t.dptr()).I64(int64(n))); err != nil {
		return 0, err
	}
	var buf [256]float32
	if err := cuda.CopyDtoH(unsafe.Pointer(&buf[0]), partial, int64(4*blocks)); err != nil {
		return 0, err
	}
	s := 0.0
	for _, v := range buf[:blocks] {
		s += float64(v)
	}
	return s, nil
}

func roundBF16CUDA(out, x *Tensor) error {
	n := x.Len()
	return runCUDA("RoundBF16", func() error {
		var args cuda.Args
		return launchElt(kern.round_bf16_f32, n, args.Ptr(out.dptr()).Ptr(x.dptr()).I64(int64(n)))
	}, func(host hostCopy) error { return RoundBF16(host(out), host(x)) }, out, x)
}

// clipByGlobalNormCUDA: one sum_squares_f32 launch per run of adjacent
// tensors (forDeviceRuns: one for a flat gradient buffer) into a device
// list of partial sums, clip_coef_f32 turning them into the factor, and one
// scale_by_f32 per run reading it: nothing comes back to the host.
func clipByGlobalNormCUDA(ts []*Tensor, maxNorm float64) error {
	const op = "ClipByGlobalNorm"
	runs := 0
	if err := forDeviceRuns(ts, func(*Tensor, int) error { runs++; return nil }); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return runCUDA(op, func() error {
		const perRun = 256 // sum_squares_f32's most blocks
		scratch, free, err := devTemp(runs*perRun + 1)
		if err != nil {
			return err
		}
		defer free()
		coef := scratch + cuda.Ptr(4*runs*perRun)
		parts := 0
		sum := func(t *Tensor, n int) error {
			blocks := cuda.Blocks(n, eltBlock, perRun)
			var a cuda.Args
			a.Ptr(scratch + cuda.Ptr(4*parts)).Ptr(t.dptr()).I64(int64(n))
			parts += blocks
			return cuda.Launch(kern.sum_squares_f32, cuda.D1(blocks), cuda.D1(eltBlock), 0, &a)
		}
		if err := forDeviceRuns(ts, sum); err != nil {
			return err
		}
		var c cuda.Args
		c.Ptr(coef).Ptr(scratch).Int(parts).U64(math.Float64bits(maxNorm))
		if err := cuda.Launch(kern.clip_coef_f32, cuda.D1(1), cuda.D1(32), 0, &c); err != nil {
			return err
		}
		return forDeviceRuns(ts, func(t *Tensor, n int) error {
			var a cuda.Args
			return launchElt(kern.scale_by_f32, n, a.Ptr(t.dptr()).Ptr(coef).I64(int64(n)))
		})
	}, func(host hostCopy) error { return ClipByGlobalNorm(host.all(ts), maxNorm) }, ts...)
}
