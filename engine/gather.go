package engine

import "fmt"

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
		return gatherRowsCUDA(out, src, idx, row)
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
