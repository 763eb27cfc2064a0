package engine

import "github.com/kiln-ml/kiln/cuda"

// The GPU side of activation.go: kernels/activation.cu.

var (
	kActForward = [...]*cuda.Kernel{
		ReLU:    kern.relu_forward_f32,
		GELU:    kern.gelu_forward_f32,
		Sigmoid: kern.sigmoid_forward_f32,
		Tanh:    kern.tanh_forward_f32,
	}
	kActBackward = [...]*cuda.Kernel{
		ReLU:    kern.relu_backward_f32,
		GELU:    kern.gelu_backward_f32,
		Sigmoid: kern.sigmoid_backward_f32,
		Tanh:    kern.tanh_backward_f32,
	}
)

// activationForwardCUDA launches out = f(x); kind is valid and the shapes
// checked.
func activationForwardCUDA(out, x *Tensor, kind Activation) error {
	return runCUDA("ActivationForward", func() error {
		n := x.Len()
		var a cuda.Args
		return launchElt(kActForward[kind], n, a.Ptr(out.dptr()).Ptr(x.dptr()).I64(int64(n)))
	}, func(host hostCopy) error { return ActivationForward(host(out), host(x), kind) }, out, x)
}

// activationBackwardCUDA launches dx = dout·f'. The kernel reads x for GELU
// and the forward output y for the others (ReLU: y, or x when y is nil).
func activationBackwardCUDA(dx, dout, x, y *Tensor, kind Activation) error {
	return runCUDA("ActivationBackward", func() error {
		src := y
		if kind == GELU || src == nil {
			src = x
		}
		n := dout.Len()
		var a cuda.Args
		return launchElt(kActBackward[kind], n, a.Ptr(dx.dptr()).Ptr(dout.dptr()).Ptr(src.dptr()).I64(int64(n)))
	}, func(host hostCopy) error { return ActivationBackward(host(dx), host(dout), host(x), host(y), kind) }, dx, dout, x, y)
}
