package engine

import "github.com/kiln-ml/kiln/cuda"

// The GPU side of activation.go: kernels/activation.cu.

var (
	kActForward = [...]*cuda.Kernel{
		ReLU:    cuda.K("relu_forward_f32"),
		GELU:    cuda.K("gelu_forward_f32"),
		Sigmoid: cuda.K("sigmoid_forward_f32"),
		Tanh:    cuda.K("tanh_forward_f32"),
	}
	kActBackward = [...]*cuda.Kernel{
		ReLU:    cuda.K("relu_backward_f32"),
		GELU:    cuda.K("gelu_backward_f32"),
		Sigmoid: cuda.K("sigmoid_backward_f32"),
		Tanh:    cuda.K("tanh_backward_f32"),
	}
)

// activationForwardCUDA launches out = f(x); kind is valid and the shapes
// checked.
func activationForwardCUDA(out, x *Tensor, kind Activation) error {
	n := x.Len()
	var a cuda.Args
	return launchElt(kActForward[kind], n, a.Ptr(out.dptr()).Ptr(x.dptr()).I64(int64(n)))
}

// activationBackwardCUDA launches dx = dout·f'. The kernel reads x for GELU
// and the forward output y for the others (ReLU: y, or x when y is nil).
func activationBackwardCUDA(dx, dout, x, y *Tensor, kind Activation) error {
	src := y
	if kind == GELU || src == nil {
		src = x
	}
	n := dout.Len()
	var a cuda.Args
	return launchElt(kActBackward[kind], n, a.Ptr(dx.dptr()).Ptr(dout.dptr()).Ptr(src.dptr()).I64(int64(n)))
}

// runCUDAInPlace is runCUDA for ops whose outputs may be their inputs (an
// in-place activation, dx = dout): with KILN_CUDA_CHECK on, the CPU rerun
// gets one host copy per distinct tensor, so an in-place call is checked as
// the in-place call it is rather than as two copies of which one changed.
func runCUDAInPlace(op string, gpu func() error, cpu func(h []*Tensor) error, args ...*Tensor) error {
	if !checkCUDA {
		return gpu()
	}
	uniq := make([]*Tensor, 0, len(args))
	at := make([]int, len(args))
	for i, a := range args {
		at[i] = -1
		if a == nil {
			continue
		}
		for j, u := range uniq {
			if u == a || (sameData(u, a) && sameShape(u.shape, a.shape)) {
				at[i] = j
				break
			}
		}
		if at[i] < 0 {
			at[i] = len(uniq)
			uniq = append(uniq, a)
		}
	}
	return runCUDA(op, gpu, func(h []*Tensor) error {
		full := make([]*Tensor, len(args))
		for i, j := range at {
			if j >= 0 {
				full[i] = h[j]
			}
		}
		return cpu(full)
	}, uniq...)
}
