package engine

import (
	"math"

	"github.com/kiln-ml/kiln/cuda"
)

// The GPU side of optim.go: kernels/optim.cu, with the hyper-parameters
// rounded to float32 exactly as the CPU's float32 path rounds them.

func sgdStepCUDA(w, g, buf *Tensor, c SGDConfig) error {
	return runCUDA("SGDStep", func() error {
		n := w.Len()
		var bp cuda.Ptr
		if buf != nil {
			bp = buf.dptr()
		}
		nesterov := 0
		if c.Nesterov {
			nesterov = 1
		}
		var a cuda.Args
		a.Ptr(w.dptr()).Ptr(g.dptr()).Ptr(bp).F32(float32(c.LR)).F32(float32(c.Momentum)).F32(float32(c.WeightDecay)).
			Int(nesterov).I64(int64(n))
		return launchElt(kern.sgd_step_f32, n, &a)
	}, func(host hostCopy) error { return SGDStep(host(w), host(g), host(buf), c) }, w, g, buf)
}

func adamWStepCUDA(w, g, m, v *Tensor, c AdamWConfig) error {
	return runCUDA("AdamWStep", func() error {
		n := w.Len()
		bc1 := 1 - math.Pow(c.Beta1, float64(c.Step))
		bc2 := 1 - math.Pow(c.Beta2, float64(c.Step))
		var a cuda.Args
		a.Ptr(w.dptr()).Ptr(g.dptr()).Ptr(m.dptr()).Ptr(v.dptr()).F32(float32(c.Beta1)).F32(float32(c.Beta2)).
			F32(float32(c.LR / bc1)).F32(float32(1 / math.Sqrt(bc2))).F32(float32(1 - c.LR*c.WeightDecay)).
			F32(float32(c.Eps)).I64(int64(n))
		return launchElt(kern.adamw_step_f32, n, &a)
	}, func(host hostCopy) error { return AdamWStep(host(w), host(g), host(m), host(v), c) }, w, g, m, v)
}
