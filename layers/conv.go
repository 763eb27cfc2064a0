package layers

import (
	"cmp"
	"math/rand/v2"

	"github.com/kiln-ml/kiln/engine"
)

// ConvOptions are a convolution's hyper-parameters; zero values are PyTorch's
// defaults (stride 1, no padding, dilation 1, one group, with bias).
type ConvOptions struct {
	Stride, Padding, Dilation, Groups int
	NoBias                            bool
}

// Conv2D is nn.Conv2d: weight [out, in/groups, k, k], bias [out].
type Conv2D struct {
	Weight, Bias *Param
	P            engine.Conv2DParams
	x, out, dx   *engine.Tensor
	skipDx       bool
	shapes       shapeCache
}

// NewConv2D initialises like PyTorch: U(±1/√fan_in) with fan_in = in/groups·k².
func NewConv2D(rng *rand.Rand, in, out, kernel int, o ConvOptions) *Conv2D {
	g := max(o.Groups, 1)
	// 0 is the default; a negative value stays, for Forward to refuse by name
	// (Conv2DOutputShape), as PyTorch refuses it.
	c := &Conv2D{
		Weight: newParam(engine.Float32, false, out, in/g, kernel, kernel),
		P:      engine.Conv2DSquare(cmp.Or(o.Stride, 1), o.Padding, cmp.Or(o.Dilation, 1), cmp.Or(o.Groups, 1)),
	}
	bound := fanInBound(in / g * kernel * kernel)
	uniform(c.Weight.Value, rng, bound)
	if !o.NoBias {
		c.Bias = newParam(engine.Float32, true, out)
		uniform(c.Bias.Value, rng, bound)
	}
	return c
}

func (c *Conv2D) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	shape, err := c.shapes.get(x.Shape(), func(in []int) ([]int, error) {
		return engine.Conv2DOutputShape(in, c.Weight.Value.Shape(), c.P)
	})
	if err != nil {
		return nil, err
	}
	c.x = x
	c.out = engine.EnsureLike(c.out, x, shape...)
	return c.out, engine.Conv2DForward(c.out, x, c.Weight.Value, valueOf(c.Bias), c.P)
}

func (c *Conv2D) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	if c.x == nil {
		return nil, backwardFirst(c)
	}
	var dx *engine.Tensor
	if !c.skipDx {
		c.dx = engine.EnsureLike(c.dx, c.x, c.x.Shape()...)
		dx = c.dx
	}
	return dx, engine.Conv2DBackward(dx, c.Weight.Grad, gradOf(c.Bias), dout, c.x, c.Weight.Value, c.P)
}

func (c *Conv2D) Walk(prefix string, visit func(string, *Param)) {
	visit(join(prefix, "weight"), c.Weight)
	if c.Bias != nil {
		visit(join(prefix, "bias"), c.Bias)
	}
}

func (c *Conv2D) SetTraining(bool)        {}
func (c *Conv2D) SkipInputGrad(skip bool) { c.skipDx = skip }
