package engine

import "github.com/kiln-ml/kiln/cuda"

// The GPU side of RoundBF16: kernels/arith.cu.

func roundBF16CUDA(out, x *Tensor) error {
	n := x.Len()
	return runCUDA("RoundBF16", func() error {
		var args cuda.Args
		return launchElt(kern.round_bf16_f32, n, args.Ptr(out.dptr()).Ptr(x.dptr()).I64(int64(n)))
	}, func(host hostCopy) error { return RoundBF16(host(out), host(x)) }, out, x)
}
