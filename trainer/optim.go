package trainer

import (
	"fmt"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

// Optimizer updates parameters from their gradients. Its state is allocated
// on the first step, so later steps allocate nothing.
type Optimizer interface {
	Step(params []*layers.Param, lr float64) error
	// State returns the optimiser's tensors by name (created for params if
	// they do not exist yet) and its scalar state, for checkpoints. Loading
	// copies into the returned tensors and calls SetScalars.
	State(params []*layers.Param) (map[string]*engine.Tensor, map[string]float64)
	SetScalars(map[string]float64)
}

// SGD is torch.optim.SGD: momentum, Nesterov and L2 weight decay (skipped for
// parameters marked NoDecay).
type SGD struct {
	Momentum, WeightDecay float64
	Nesterov              bool
	bufs                  []*engine.Tensor
	all                   []engine.SGDParam // the step's list, kept: a step allocates nothing
}

func (o *SGD) init(params []*layers.Param) {
	if o.Momentum != 0 && len(o.bufs) != len(params) {
		o.bufs = make([]*engine.Tensor, len(params))
		for i, p := range params {
			o.bufs[i] = engine.EnsureLike(nil, p.Value, p.Value.Shape()...)
		}
	}
}

func (o *SGD) State(params []*layers.Param) (map[string]*engine.Tensor, map[string]float64) {
	o.init(params)
	m := map[string]*engine.Tensor{}
	for i, b := range o.bufs {
		m[fmt.Sprintf("momentum.%d", i)] = b
	}
	return m, nil
}

func (o *SGD) SetScalars(map[string]float64) {}

// Step updates every parameter in one engine call: on the GPU, one launch.
func (o *SGD) Step(params []*layers.Param, lr float64) error {
	o.init(params)
	o.all = o.all[:0]
	for i, p := range params {
		var buf *engine.Tensor
		if o.Momentum != 0 {
			buf = o.bufs[i]
		}
		o.all = append(o.all, engine.SGDParam{W: p.Value, G: p.Grad, Buf: buf, NoDecay: p.NoDecay})
	}
	c := engine.SGDConfig{LR: lr, Momentum: o.Momentum, WeightDecay: o.WeightDecay, Nesterov: o.Nesterov}
	err := engine.SGDStepAll(o.all, c)
	clear(o.all) // hold no tensors between steps
	if err != nil {
		return fmt.Errorf("sgd: %w", err)
	}
	return nil
}

// AdamW is torch.optim.AdamW (decoupled weight decay, skipped for NoDecay
// parameters). Zero Beta1, Beta2 and Eps take PyTorch's defaults. With L2 set
// it is torch.optim.Adam instead: the decay is added to the gradient.
type AdamW struct {
	Beta1, Beta2, Eps, WeightDecay float64
	L2                             bool
	step                           int
	m, v                           []*engine.Tensor
	all                            []engine.AdamWParam // the step's list, kept: a step allocates nothing
	// l2g are the gradients plus the L2 decay (Adam with weight decay):
	// buffers of their own, as torch.optim.Adam leaves .grad as it was for
	// what reads it after the step (the gradient histograms).
	l2g []*engine.Tensor
}

func (o *AdamW) init(params []*layers.Param) {
	if len(o.m) != len(params) {
		o.m = make([]*engine.Tensor, len(params))
		o.v = make([]*engine.Tensor, len(params))
		for i, p := range params {
			o.m[i] = engine.EnsureLike(nil, p.Value, p.Value.Shape()...)
			o.v[i] = engine.EnsureLike(nil, p.Value, p.Value.Shape()...)
		}
	}
}

func (o *AdamW) State(params []*layers.Param) (map[string]*engine.Tensor, map[string]float64) {
	o.init(params)
	m := map[string]*engine.Tensor{}
	for i := range o.m {
		m[fmt.Sprintf("exp_avg.%d", i)] = o.m[i]
		m[fmt.Sprintf("exp_avg_sq.%d", i)] = o.v[i]
	}
	return m, map[string]float64{"step": float64(o.step)}
}

func (o *AdamW) SetScalars(s map[string]float64) { o.step = int(s["step"]) }

func (o *AdamW) Step(params []*layers.Param, lr float64) error {
	o.init(params)
	o.step++
	c := engine.AdamWConfig{LR: lr, Beta1: o.Beta1, Beta2: o.Beta2, Eps: o.Eps, WeightDecay: o.WeightDecay, Step: o.step}
	if c.Beta1 == 0 {
		c.Beta1 = 0.9
	}
	if c.Beta2 == 0 {
		c.Beta2 = 0.999
	}
	if c.Eps == 0 {
		c.Eps = 1e-8
	}
	if !(c.Beta1 >= 0 && c.Beta1 < 1 && c.Beta2 >= 0 && c.Beta2 < 1 && c.Eps > 0) { // as torch.optim.AdamW refuses them
		return fmt.Errorf("adamw: betas (%v, %v) must be in [0, 1) and eps %v > 0", c.Beta1, c.Beta2, c.Eps)
	}
	o.all = o.all[:0]
	if len(o.l2g) != len(params) {
		o.l2g = make([]*engine.Tensor, len(params))
	}
	for i, p := range params {
		g := p.Grad
		if o.L2 && !p.NoDecay && c.WeightDecay != 0 {
			o.l2g[i] = engine.EnsureLike(o.l2g[i], p.Grad, p.Grad.Shape()...)
			g = o.l2g[i]
			if err := g.CopyFrom(p.Grad); err != nil {
				return err
			}
			if err := engine.AddScaled(g, p.Value, c.WeightDecay); err != nil {
				return err
			}
		}
		o.all = append(o.all, engine.AdamWParam{W: p.Value, G: g, M: o.m[i], V: o.v[i], NoDecay: p.NoDecay || o.L2})
	}
	err := engine.AdamWStepAll(o.all, c)
	clear(o.all)
	if err != nil {
		return fmt.Errorf("adamw: %w", err)
	}
	return nil
}

// newOptimizer is the optimiser c names, with its settings.
func newOptimizer(c Config) Optimizer {
	switch c.Optimizer {
	case "sgd":
		return &SGD{Momentum: c.Momentum, WeightDecay: c.WeightDecay, Nesterov: c.Nesterov}
	case "adam":
		return &AdamW{WeightDecay: c.WeightDecay, L2: true}
	}
	return &AdamW{WeightDecay: c.WeightDecay}
}
