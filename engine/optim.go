package engine

import "math"

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
