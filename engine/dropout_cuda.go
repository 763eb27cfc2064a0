package engine

import "github.com/kiln-ml/kiln/cuda"

// The GPU side of dropout.go: kernels/dropout.cu draws the CPU's mask bit for
// bit from the same counter-based stream.

// dropoutForwardCUDA draws the mask (p in (0,1], training) and writes
// out = x·mask for rng's stream, advancing rng when it succeeds.
func dropoutForwardCUDA(out, mask, x *Tensor, p float64, rng *DropoutRNG, threshold uint64, scale float64) error {
	n := x.Len()
	r := *rng // the CPU rerun of KILN_CUDA_CHECK draws from the same place
	err := runCUDA("DropoutForward", func() error {
		var a cuda.Args
		a.Ptr(out.dptr()).Ptr(mask.dptr()).Ptr(x.dptr()).U64(rng.Seed).U64(rng.Offset).U64(threshold).
			F32(float32(scale)).I64(int64(n))
		return launchElt(kern.dropout_forward_f32, n, &a)
	}, func(host hostCopy) error { return DropoutForward(host(out), host(mask), host(x), p, true, &r) }, out, mask, x)
	if err == nil {
		rng.Offset += uint64(n)
	}
	return err
}

func dropoutBackwardCUDA(dx, dout, mask *Tensor) error {
	return runCUDA("DropoutBackward", func() error {
		n := dout.Len()
		var a cuda.Args
		return launchElt(kern.dropout_backward_f32, n, a.Ptr(dx.dptr()).Ptr(dout.dptr()).Ptr(mask.dptr()).I64(int64(n)))
	}, func(host hostCopy) error { return DropoutBackward(host(dx), host(dout), host(mask)) }, dx, dout, mask)
}
