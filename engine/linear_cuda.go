package engine

import "github.com/kiln-ml/kiln/cuda"

// Linear on the GPU: the three products go through gemmCUDA (the weight
// gradient, whose k is the batch, splits over k when its tile grid is
// small); the bias add and the bias gradient are small kernels in
// kernels/linear.cu, the gradient's column sums in a fixed order.

// linearForwardCUDA: out = x·Wᵀ + b; shapes checked by LinearForward.
func linearForwardCUDA(out, x, w, b *Tensor) error {
	return runCUDA("LinearForward", func() error {
		n, in, o := x.Dim(0), x.Dim(1), w.Dim(0)
		if err := gemmCUDA(w.prec, false, true, n, o, in, 1, 1, x.dptr(), in, 0, w.dptr(), in, 0, 0, out.dptr(), o, 0); err != nil {
			return err
		}
		if b == nil || n*o == 0 {
			return nil
		}
		var a cuda.Args
		return launchElt(kern.linear_bias_add_f32, n*o, a.Ptr(out.dptr()).Ptr(b.dptr()).Int(n).Int(o))
	}, func(host hostCopy) error { return LinearForward(host(out), host(x), host(w), host(b)) }, out, x, w, b)
}

// linearBackwardCUDA: dx = dout·W, dw += doutᵀ·x, db += Σ_n dout; any of dx,
// dw, db may be nil. Shapes checked by LinearBackward.
func linearBackwardCUDA(dx, dw, db, dout, x, w *Tensor) error {
	return runCUDA("LinearBackward", func() error {
		n, in, o := x.Dim(0), x.Dim(1), w.Dim(0)
		if dx != nil {
			if err := gemmCUDA(w.prec, false, false, n, in, o, 1, 1, dout.dptr(), o, 0, w.dptr(), in, 0, 0, dx.dptr(), in, 0); err != nil {
				return err
			}
		}
		if dw != nil {
			if err := gemmCUDA(w.prec, true, false, o, in, n, 1, 1, dout.dptr(), o, 0, x.dptr(), in, 0, 1, dw.dptr(), in, 0); err != nil {
				return err
			}
		}
		if db != nil && n > 0 && o > 0 {
			var a cuda.Args
			a.Ptr(db.dptr()).Ptr(dout.dptr()).Int(n).Int(o)
			return cuda.Launch(kern.linear_bias_grad_f32, cuda.D1(min(ceilDiv(o, 32), 4096)), cuda.Dim3{X: 32, Y: 8, Z: 1}, 0, &a)
		}
		return nil
	}, func(host hostCopy) error {
		return LinearBackward(host(dx), host(dw), host(db), host(dout), host(x), host(w))
	}, dx, dw, db, dout, x, w)
}
