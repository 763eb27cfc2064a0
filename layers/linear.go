package layers

import (
	"math/rand/v2"

	"github.com/kiln-ml/kiln/engine"
)

// Linear is nn.Linear: y = x·Wᵀ + b with W stored [out, in].
type Linear struct {
	Weight, Bias *Param
	x            *engine.Tensor
	out, dx      *engine.Tensor
	skipDx       bool
	// relu is the ReLU right after this layer in a Sequential (Append links
	// them): both run as one op (engine.LinearReLUForward), the bias and the
	// ReLU in the product's epilogue on the GPU, when that Sequential runs
	// them (armed, for one Forward); fused says this step did. dpre is the
	// gradient before the ReLU.
	relu         *Act
	armed, fused bool
	dpre         *engine.Tensor
}

// NewLinear initialises like PyTorch: W and b from U(±1/√in).
func NewLinear(rng *rand.Rand, in, out int, bias bool) *Linear {
	l := &Linear{Weight: newParam(engine.Float32, false, out, in)}
	l.Weight.settable = true
	uniform(l.Weight.Value, rng, fanInBound(in))
	if bias {
		l.Bias = newParam(engine.Float32, true, out)
		l.Bias.settable = true
		uniform(l.Bias.Value, rng, fanInBound(in))
	}
	return l
}

func (l *Linear) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	l.x = x
	l.out = engine.EnsureLike(l.out, x, x.Dim(0), l.Weight.Value.Dim(0))
	l.fused, l.armed = l.armed && l.relu != nil, false
	if l.fused {
		err := engine.LinearReLUForward(l.out, x, l.Weight.Value, valueOf(l.Bias))
		l.relu.applied = err == nil
		return l.out, err
	}
	return l.out, engine.LinearForward(l.out, x, l.Weight.Value, valueOf(l.Bias))
}

func (l *Linear) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	if l.x == nil {
		return nil, backwardFirst(l)
	}
	var dx *engine.Tensor
	if !l.skipDx {
		l.dx = engine.EnsureLike(l.dx, l.x, l.x.Shape()...)
		dx = l.dx
	}
	mode, err := gradModeOf(l.Weight, l.Bias)
	if err != nil {
		return nil, err
	}
	var dpre, out *engine.Tensor
	if l.fused {
		l.dpre = engine.EnsureLike(l.dpre, dout, dout.Shape()...)
		dpre, out = l.dpre, l.out
	}
	return dx, engine.LinearBackwardMode(mode, dx, l.Weight.Grad, gradOf(l.Bias), dpre, dout, out, l.x, l.Weight.Value)
}

func (l *Linear) Walk(prefix string, visit func(string, *Param)) {
	visit(join(prefix, "weight"), l.Weight)
	if l.Bias != nil {
		visit(join(prefix, "bias"), l.Bias)
	}
}

func (l *Linear) SetTraining(bool)        {}
func (l *Linear) SkipInputGrad(skip bool) { l.skipDx = skip }

func valueOf(p *Param) *engine.Tensor {
	if p == nil {
		return nil
	}
	return p.Value
}

func gradOf(p *Param) *engine.Tensor {
	if p == nil {
		return nil
	}
	return p.Grad
}
