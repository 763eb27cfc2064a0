package engine

import (
	"unsafe"

	"github.com/kiln-ml/kiln/cuda"
)

// The GPU side of gather.go: kernels/gather.cu.

// gatherIdx holds *[]int32 host buffers for gatherRowsCUDA; a taskPool,
// not a sync.Pool, so that a GC does not make the next step allocate.
var gatherIdx = taskPool{New: func() any { return new([]int32) }}

// gatherRowsCUDA launches out = src[idx] row by row; idx is in range and
// row is the element count of one row.
func gatherRowsCUDA(out, src *Tensor, idx []int, row int) error {
	return runCUDA("GatherRows", func() error {
		if len(idx) == 0 {
			return nil
		}
		// The indices go up as int32 through a reused host buffer: one batch per
		// step would otherwise allocate one per step.
		bp := gatherIdx.Get().(*[]int32)
		defer gatherIdx.Put(bp)
		if cap(*bp) < len(idx) {
			*bp = make([]int32, len(idx))
		}
		idx32 := (*bp)[:len(idx)]
		for i, r := range idx {
			idx32[i] = int32(r)
		}
		d, err := cuda.Alloc(int64(4 * len(idx)))
		if err != nil {
			return err
		}
		defer cuda.Free(d, int64(4*len(idx)))
		if err := cuda.CopyHtoD(d, unsafe.Pointer(&idx32[0]), int64(4*len(idx))); err != nil {
			return err
		}
		var a cuda.Args
		return launchElt(kern.gather_rows_f32, len(idx)*row, a.Ptr(out.dptr()).Ptr(src.dptr()).Ptr(d).Int(len(idx)).I64(int64(row)))
	}, func(host hostCopy) error { return GatherRows(host(out), host(src), idx) }, out, src)
}
