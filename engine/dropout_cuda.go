package engine

import "github.com/kiln-ml/kiln/cuda"

// The GPU side of dropout.go: kernels/dropout.cu draws the CPU's mask bit for
// bit from the same counter-based stream.

// dropoutForwardCUDA draws the mask and writes out = x·mask for the stream at
// offset; the caller advances its DropoutRNG.
func dropoutForwardCUDA(out, mask, x *Tensor, seed, offset, threshold uint64, scale float32) error {
	n := x.Len()
	var a cuda.Args
	a.Ptr(out.dptr()).Ptr(mask.dptr()).Ptr(x.dptr()).U64(seed).U64(offset).U64(threshold).F32(scale).I64(int64(n))
	return launchElt(kern.dropout_forward_f32, n, &a)
}

func dropoutBackwardCUDA(dx, dout, mask *Tensor) error {
	n := dout.Len()
	var a cuda.Args
	return launchElt(kern.dropout_backward_f32, n, a.Ptr(dx.dptr()).Ptr(dout.dptr()).Ptr(mask.dptr()).I64(int64(n)))
}
