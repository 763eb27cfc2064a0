package layers

import "github.com/kiln-ml/kiln/engine"

// Act applies an element-wise activation (ReLU, GELU, Sigmoid, Tanh).
type Act struct {
	stateless
	Kind    engine.Activation
	x       *engine.Tensor
	out, dx *engine.Tensor
	// applied is set by the BatchNorm2D or Linear this ReLU follows in a
	// Sequential when it has just run itself and the ReLU as one op, for
	// the next Forward; fused says this step was such: forward and
	// backward pass through (that layer applied the ReLU and masks).
	applied, fused bool
	// pool is the MaxPool2D right after this ReLU in a Sequential; pooled
	// says this step, armed by that Sequential, leaves the ReLU to it
	// (engine.MaxPool2DReLUForward): forward and backward pass through.
	pool          *MaxPool2D
	armed, pooled bool
	// derived: this step's forward kept GELU's derivative in dx, the
	// backward's own buffer (engine.GELUForwardDeriv: training on the CPU);
	// eval: SetTraining(false), when nothing will go backward.
	derived, eval bool
}

// NewReLU, NewGELU, NewSigmoid and NewTanh make activation layers.
func NewReLU() *Act    { return &Act{Kind: engine.ReLU} }
func NewGELU() *Act    { return &Act{Kind: engine.GELU} }
func NewSigmoid() *Act { return &Act{Kind: engine.Sigmoid} }
func NewTanh() *Act    { return &Act{Kind: engine.Tanh} }

func (a *Act) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	a.x = x
	a.fused, a.applied = a.applied, false
	a.pooled = a.armed && a.pool != nil && !a.fused
	a.armed = false
	if a.fused || a.pooled {
		return x, nil
	}
	a.out = engine.EnsureLike(a.out, x, x.Shape()...)
	a.derived = a.Kind == engine.GELU && !a.eval && x.Device() == engine.CPU
	if a.derived {
		a.dx = engine.EnsureLike(a.dx, x, x.Shape()...)
		return a.out, engine.GELUForwardDeriv(a.out, a.dx, x)
	}
	return a.out, engine.ActivationForward(a.out, x, a.Kind)
}

func (a *Act) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	if a.fused || a.pooled {
		return dout, nil
	}
	if a.derived && dout.SameShape(a.dx.Shape()...) {
		a.derived = false // the derivative is used up: dx takes its place
		return a.dx, engine.GELUBackwardDeriv(a.dx, dout, a.dx)
	}
	a.dx = engine.EnsureLike(a.dx, dout, dout.Shape()...)
	return a.dx, engine.ActivationBackward(a.dx, dout, a.x, a.out, a.Kind)
}

// SetTraining(false) stops GELU's forward from keeping its derivative.
func (a *Act) SetTraining(t bool) { a.eval = !t }
