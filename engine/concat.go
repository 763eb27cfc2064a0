package engine

import "strconv"

// Channel concatenation (axis 1) of tensors shaped (N,Ci,…) and its backward
// pass, the split. Per sample each input is one contiguous block, so both
// directions are a sequence of copies.

// ConcatShape appends to dst[:0] the shape of the concatenation of xs along
// axis 1, (N, ΣCi, …), and reports whether xs fit together (same rank ≥ 2,
// same N and same trailing axes). Keep dst between calls to allocate nothing.
func ConcatShape(dst []int, xs []*Tensor) ([]int, bool) {
	dst = dst[:0]
	if len(xs) == 0 || xs[0] == nil || xs[0].Rank() < 2 {
		return dst, false
	}
	first := xs[0].shape
	c := 0
	for _, x := range xs {
		if x == nil || len(x.shape) != len(first) || x.shape[0] != first[0] ||
			!sameShape(x.shape[2:], first[2:]) {
			return dst, false
		}
		c += x.shape[1]
	}
	dst = append(dst, first[0], c)
	return append(dst, first[2:]...), true
}

// ConcatForward writes the inputs one after another along axis 1 of out.
// Passing a kept slice allocates nothing.
//
//	out: (N, ΣCi, …)  xs[i]: (N, Ci, …)
func ConcatForward(out *Tensor, xs []*Tensor) error {
	const op = "ConcatForward"
	dt, err := checkConcat(op, out, xs)
	if err != nil {
		return err
	}
	if out.device == CUDA {
		return concatForwardCUDA(out, xs)
	}
	n, outBlock := out.shape[0], out.Len()/max(out.shape[0], 1)
	at := 0
	for _, x := range xs {
		block := x.Len() / max(n, 1)
		pick(dt, concatCopy[float32], concatCopy[float64])(out, x, n, outBlock, block, at, true)
		at += block
	}
	return nil
}

// ConcatBackward splits dout along axis 1 into the inputs' gradients,
// overwriting them; a nil entry of dxs is skipped.
//
//	dxs[i]: (N, Ci, …)  dout: (N, ΣCi, …)
func ConcatBackward(dxs []*Tensor, dout *Tensor) error {
	const op = "ConcatBackward"
	dt, err := checkConcat(op, dout, dxs)
	if err != nil {
		return err
	}
	if dout.device == CUDA {
		return concatBackwardCUDA(dxs, dout)
	}
	n, outBlock := dout.shape[0], dout.Len()/max(dout.shape[0], 1)
	at := 0
	for i, dx := range dxs {
		if dx == nil {
			// checkConcat allows one nil entry, whose width is what the others leave.
			at += dxChannels(dout, dxs, i) * (outBlock / max(dout.shape[1], 1))
			continue
		}
		block := dx.Len() / max(n, 1)
		pick(dt, concatCopy[float32], concatCopy[float64])(dout, dx, n, outBlock, block, at, false)
		at += block
	}
	return nil
}

// dxChannels is the channel count of the nil entry i: dout's channels less
// the others'. Only one entry may be nil for this to be known.
func dxChannels(dout *Tensor, dxs []*Tensor, i int) int {
	c := dout.shape[1]
	for j, dx := range dxs {
		if j != i && dx != nil {
			c -= dx.shape[1]
		}
	}
	return c
}

// checkConcat checks that xs (at most one nil, in the backward pass) fit
// together into cat.
func checkConcat(op string, cat *Tensor, xs []*Tensor) (DType, error) {
	if cat == nil || len(xs) == 0 {
		return 0, shapeErr(op, "need the concatenation and at least one part", "cat", cat, "parts", len(xs))
	}
	_, dt, err := agreeDev(op, cat)
	if err != nil {
		return 0, err
	}
	bad := cat.Rank() < 2
	c, nils := 0, 0
	for i, x := range xs {
		if x == nil {
			nils++
			continue
		}
		if _, _, err := agreeDev(op, cat, x); err != nil {
			return 0, err
		}
		bad = bad || x.Rank() != cat.Rank() || x.shape[0] != cat.shape[0] || !sameShape(x.shape[2:], cat.shape[2:])
		if bad {
			return 0, shapeErr(op, "part "+strconv.Itoa(i)+" does not fit (want (N,Ci,…) parts of (N,ΣCi,…))",
				"cat", cat, "part", x)
		}
		c += x.shape[1]
	}
	if bad {
		return 0, shapeErr(op, "want (N,C,…)", "cat", cat)
	}
	if nils > 0 && (op == "ConcatForward" || nils > 1) {
		return 0, shapeErr(op, "forward parts must all be given; backward may skip one", "cat", cat, "nil parts", nils)
	}
	if (nils == 0 && c != cat.shape[1]) || c > cat.shape[1] {
		return 0, shapeErr(op, "channel counts do not add up", "cat", cat, "parts' channels", c)
	}
	return dt, nil
}

// concatCopy copies block values per sample between a part and its place at
// offset at of each outBlock-sized sample of cat (toCat chooses the way).
func concatCopy[T Float](catT, partT *Tensor, n, outBlock, block, at int, toCat bool) {
	cat, part := dataAs[T](catT), dataAs[T](partT)
	for i := 0; i < n; i++ {
		c := cat[i*outBlock+at : i*outBlock+at+block]
		p := part[i*block : i*block+block]
		if toCat {
			copy(c, p)
		} else {
			copy(p, c)
		}
	}
}
