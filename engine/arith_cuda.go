package engine

import (
	"unsafe"

	"github.com/kiln-ml/kiln/cuda"
)

// The GPU side of arith.go and Tensor.Fill: kernels/arith.cu (whose
// gather_rows_f32 GatherRows launches from gather.go).

// kAdd, kScale and kAxpy are launched directly in arith.go's runCUDA
// closures; they go when those launches move into launchers here.
var (
	kAdd   = kern.add_f32
	kScale = kern.scale_f32
	kAxpy  = kern.axpy_f32
)

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
