package engine

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/kiln-ml/kiln/cuda"
)

var (
	kGatherRows = cuda.K("gather_rows_f32")
	gatherIdx   sync.Pool // *[]int32 host buffers for gatherRowsCUDA
)

// GatherRows copies rows idx of src into out: out[i] = src[idx[i]] along
// axis 0. The trainer uses it to cut batches from a data set that lives on
// the GPU, so a step uploads indices instead of images.
//
//	out: (len(idx), …)  src: (M, …) with the same trailing shape
func GatherRows(out, src *Tensor, idx []int) error {
	const op = "GatherRows"
	dev, dt, err := agreeDev(op, out, src)
	if err != nil {
		return err
	}
	if out.Rank() == 0 || src.Rank() != out.Rank() || !sameShape(out.shape[1:], src.shape[1:]) || out.shape[0] != len(idx) {
		return shapeErr(op, fmt.Sprintf("want out (%d, …) with src's trailing shape", len(idx)), "out", out, "src", src)
	}
	rows := src.shape[0]
	for i, r := range idx {
		if r < 0 || r >= rows {
			return shapeErr(op, fmt.Sprintf("index %d (position %d) out of range", r, i), "src", src)
		}
	}
	row := 1
	for _, d := range src.shape[1:] {
		row *= d
	}
	if dev == CUDA {
		return runCUDA(op, func() error { return gatherRowsCUDA(out, src, idx, row) },
			func(h []*Tensor) error { return GatherRows(h[0], h[1], idx) }, out, src)
	}
	pick(dt, gatherRows[float32], gatherRows[float64])(out, src, idx, row)
	return nil
}

func gatherRows[T Float](outT, srcT *Tensor, idx []int, row int) {
	out, src := dataAs[T](outT), dataAs[T](srcT)
	for i, r := range idx {
		copy(out[i*row:(i+1)*row], src[r*row:(r+1)*row])
	}
}

func gatherRowsCUDA(out, src *Tensor, idx []int, row int) error {
	if len(idx) == 0 {
		return nil
	}
	// The indices go up as int32 through a reused host buffer: one batch per
	// step would otherwise allocate one per step.
	bp, _ := gatherIdx.Get().(*[]int32)
	if bp == nil {
		bp = new([]int32)
	}
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
	return launchElt(kGatherRows, len(idx)*row, a.Ptr(out.dptr()).Ptr(src.dptr()).Ptr(d).Int(len(idx)).I64(int64(row)))
}
