package engine

import (
	"fmt"
	"math"
)

// Fused optimiser updates, one pass over a parameter, its gradient and its
// state, with PyTorch's semantics (torch.optim.SGD and AdamW).

// SGDConfig holds SGD's hyper-parameters.
type SGDConfig struct {
	LR, Momentum, WeightDecay float64
	Nesterov                  bool
}

// SGDStep updates w in place: g' = g + wd·w; buf = μ·buf + g'; the step is
// buf (or g' + μ·buf with Nesterov); w -= lr·step. buf starts at zero, which
// matches PyTorch's first step (buf = g'). buf may be nil when μ = 0.
//
//	w, g, buf: same shape
func SGDStep(w, g, buf *Tensor, c SGDConfig) error {
	const op = "SGDStep"
	dev, dt, err := agreeDev(op, w, g, buf)
	if err != nil {
		return err
	}
	if g.Len() != w.Len() || (buf != nil && buf.Len() != w.Len()) || (buf == nil && c.Momentum != 0) {
		return shapeErr(op, "w, g and momentum buffer must match", "w", w, "g", g, "buf", buf)
	}
	if dev == CUDA {
		return sgdStepCUDA(w, g, buf, c)
	}
	pick(dt, sgdStep[float32], sgdStep[float64])(w, g, buf, c)
	return nil
}

// The updates are memory-bound: large parameters are split over the workers,
// and the float32 loops run in C (optim_cpu.c), which gcc vectorises.

type sgdTask[T Float] struct {
	w, g, buf []T
	c         SGDConfig
}

func (t *sgdTask[T]) run(_, lo, hi int) {
	sgdStepPart(t.w[lo:hi], t.g[lo:hi], subOrNil(t.buf, lo, hi), t.c)
}

var sgdTasks = [2]taskPool{
	{New: func() any { return new(sgdTask[float32]) }},
	{New: func() any { return new(sgdTask[float64]) }},
}

func sgdStep[T Float](wT, gT, bufT *Tensor, c SGDConfig) {
	w, buf := dataAs[T](wT), dataAs[T](bufT)
	g := dataAs[T](gT)[:len(w)]
	if buf != nil {
		buf = buf[:len(w)]
	}
	if len(w) < parallelMinElems {
		sgdStepPart(w, g, buf, c)
		return
	}
	p := &sgdTasks[dtypeIndex[T]()]
	t := p.Get().(*sgdTask[T])
	*t = sgdTask[T]{w, g, buf, c}
	parallelFor(len(w), t)
	*t = sgdTask[T]{}
	p.Put(t)
}

func sgdStepPart[T Float](w, g, buf []T, c SGDConfig) {
	if sgdStepC(w, g, buf, c) {
		return
	}
	lr, mu, wd := T(c.LR), T(c.Momentum), T(c.WeightDecay)
	g = g[:len(w)]
	if buf == nil {
		for i := range w {
			w[i] -= lr * (g[i] + wd*w[i])
		}
		return
	}
	buf = buf[:len(w)]
	for i := range w {
		d := g[i] + wd*w[i]
		b := mu*buf[i] + d
		buf[i] = b
		if c.Nesterov {
			d += mu * b
		} else {
			d = b
		}
		w[i] -= lr * d
	}
}

// AdamWConfig holds AdamW's hyper-parameters; Step counts from 1.
type AdamWConfig struct {
	LR, Beta1, Beta2, Eps, WeightDecay float64
	Step                               int
}

// AdamWStep updates w in place with decoupled weight decay, as
// torch.optim.AdamW: w -= lr·wd·w; m, v moving averages of g and g²;
// w -= lr·m̂/(√v̂ + eps) with bias-corrected m̂, v̂. (Adam is AdamW with the
// decay folded into g by the caller, or wd = 0.)
//
//	w, g, m, v: same shape
func AdamWStep(w, g, m, v *Tensor, c AdamWConfig) error {
	const op = "AdamWStep"
	dev, dt, err := agreeDev(op, w, g, m, v)
	if err != nil {
		return err
	}
	if m == nil || v == nil || g.Len() != w.Len() || m.Len() != w.Len() || v.Len() != w.Len() {
		return shapeErr(op, "w, g, m and v must match", "w", w, "g", g, "m", m, "v", v)
	}
	if c.Step < 1 {
		return shapeErr(op, "step counts from 1", "step", c.Step)
	}
	if dev == CUDA {
		return adamWStepCUDA(w, g, m, v, c)
	}
	pick(dt, adamWStep[float32], adamWStep[float64])(w, g, m, v, c)
	return nil
}

// adamWConsts are one AdamW step's constants in the parameter's precision.
type adamWConsts[T Float] struct{ b1, b2, stepSize, rbc2, decay, eps T }

type adamWTask[T Float] struct {
	w, g, m, v []T
	k          adamWConsts[T]
}

func (t *adamWTask[T]) run(_, lo, hi int) {
	adamWStepPart(t.w[lo:hi], t.g[lo:hi], t.m[lo:hi], t.v[lo:hi], t.k)
}

var adamWTasks = [2]taskPool{
	{New: func() any { return new(adamWTask[float32]) }},
	{New: func() any { return new(adamWTask[float64]) }},
}

func adamWStep[T Float](wT, gT, mT, vT *Tensor, c AdamWConfig) {
	w, g, m, v := dataAs[T](wT), dataAs[T](gT), dataAs[T](mT), dataAs[T](vT)
	bc1 := 1 - math.Pow(c.Beta1, float64(c.Step))
	bc2 := 1 - math.Pow(c.Beta2, float64(c.Step))
	k := adamWConsts[T]{b1: T(c.Beta1), b2: T(c.Beta2), stepSize: T(c.LR / bc1), rbc2: T(1 / math.Sqrt(bc2)),
		decay: T(1 - c.LR*c.WeightDecay), eps: T(c.Eps)}
	g, m, v = g[:len(w)], m[:len(w)], v[:len(w)]
	if len(w) < parallelMinElems {
		adamWStepPart(w, g, m, v, k)
		return
	}
	p := &adamWTasks[dtypeIndex[T]()]
	t := p.Get().(*adamWTask[T])
	*t = adamWTask[T]{w, g, m, v, k}
	parallelFor(len(w), t)
	*t = adamWTask[T]{}
	p.Put(t)
}

func adamWStepPart[T Float](w, g, m, v []T, k adamWConsts[T]) {
	if adamWStepC(w, g, m, v, k) {
		return
	}
	b1, b2, stepSize, rbc2, decay, eps := k.b1, k.b2, k.stepSize, k.rbc2, k.decay, k.eps
	for i := range w {
		gi := g[i]
		mi := b1*m[i] + (1-b1)*gi
		vi := b2*v[i] + (1-b2)*gi*gi
		m[i], v[i] = mi, vi
		w[i] = w[i]*decay - stepSize*mi/(T(math.Sqrt(float64(vi)))*rbc2+eps)
	}
}

// SGDParam is one parameter of SGDStepAll: its value, gradient and momentum
// buffer (nil without momentum), and whether weight decay skips it.
type SGDParam struct {
	W, G, Buf *Tensor
	NoDecay   bool
}

// SGDStepAll is SGDStep on every parameter of ps with one configuration
// (c.WeightDecay taken as 0 for NoDecay ones): on the GPU one launch for all
// of them, the same bits as one SGDStep each.
func SGDStepAll(ps []SGDParam, c SGDConfig) error {
	const op = "SGDStepAll"
	dev, err := agreeAll(op, len(ps), func(i int) error {
		p := ps[i]
		if p.W == nil || p.G == nil {
			return shapeErr(op, "every parameter needs w and g", "parameter", i)
		}
		if p.G.Len() != p.W.Len() || (p.Buf != nil && p.Buf.Len() != p.W.Len()) || (p.Buf == nil && c.Momentum != 0) {
			return shapeErr(op, "w, g and momentum buffer must match", "parameter", i, "w", p.W, "g", p.G, "buf", p.Buf)
		}
		return nil
	}, func(i int) [4]*Tensor { return [4]*Tensor{ps[i].W, ps[i].G, ps[i].Buf} })
	if err != nil {
		return err
	}
	if dev == CUDA {
		return sgdStepAllCUDA(ps, c)
	}
	for _, p := range ps {
		if err := SGDStep(p.W, p.G, p.Buf, p.config(c)); err != nil {
			return err
		}
	}
	return nil
}

func (p SGDParam) config(c SGDConfig) SGDConfig {
	if p.NoDecay {
		c.WeightDecay = 0
	}
	return c
}

// AdamWParam is one parameter of AdamWStepAll: value, gradient, moment
// estimates, and whether weight decay skips it.
type AdamWParam struct {
	W, G, M, V *Tensor
	NoDecay    bool
}

// AdamWStepAll is AdamWStep on every parameter of ps with one configuration
// (c.WeightDecay taken as 0 for NoDecay ones): on the GPU one launch for all
// of them, the same bits as one AdamWStep each.
func AdamWStepAll(ps []AdamWParam, c AdamWConfig) error {
	const op = "AdamWStepAll"
	if c.Step < 1 {
		return shapeErr(op, "step counts from 1", "step", c.Step)
	}
	dev, err := agreeAll(op, len(ps), func(i int) error {
		p := ps[i]
		if p.W == nil || p.G == nil || p.M == nil || p.V == nil {
			return shapeErr(op, "every parameter needs w, g, m and v", "parameter", i)
		}
		if n := p.W.Len(); p.G.Len() != n || p.M.Len() != n || p.V.Len() != n {
			return shapeErr(op, "w, g, m and v must match", "parameter", i, "w", p.W, "g", p.G, "m", p.M, "v", p.V)
		}
		return nil
	}, func(i int) [4]*Tensor { return [4]*Tensor{ps[i].W, ps[i].G, ps[i].M, ps[i].V} })
	if err != nil {
		return err
	}
	if dev == CUDA {
		return adamWStepAllCUDA(ps, c)
	}
	for _, p := range ps {
		if err := AdamWStep(p.W, p.G, p.M, p.V, p.config(c)); err != nil {
			return err
		}
	}
	return nil
}

func (p AdamWParam) config(c AdamWConfig) AdamWConfig {
	if p.NoDecay {
		c.WeightDecay = 0
	}
	return c
}

// agreeAll checks the n parameters of a multi-tensor op (check, one by one)
// and that all their tensors (of, nil for none) share the first one's
// device and dtype; it returns the device.
func agreeAll(op string, n int, check func(i int) error, of func(i int) [4]*Tensor) (Device, error) {
	dev := CPU
	var first *Tensor
	for i := range n {
		if err := check(i); err != nil {
			return dev, err
		}
		ts := of(i)
		if first == nil {
			first = ts[0]
		}
		d, _, err := agreeDev(op, ts[0], ts[1], ts[2], ts[3], first)
		if err != nil {
			return dev, fmt.Errorf("parameter %d: %w", i, err)
		}
		dev = d
	}
	return dev, nil
}
