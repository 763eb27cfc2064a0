package layers

import (
	"math/rand/v2"

	"github.com/kiln-ml/kiln/engine"
)

// NewConvBNReLU is torchvision's BasicConv2d: a bias-free convolution, batch
// norm and ReLU, with children named conv and bn.
func NewConvBNReLU(rng *rand.Rand, in, out, kernel int, o ConvOptions) *Sequential {
	o.NoBias = true
	return (&Sequential{}).
		Append("conv", NewConv2D(rng, in, out, kernel, o)).
		Append("bn", NewBatchNorm2D(out)).
		Append("relu", NewReLU())
}

// InceptionConfig gives the output channels of GoogLeNet's four branches.
type InceptionConfig struct {
	Out1x1            int // branch 1: 1×1
	Reduce3x3, Out3x3 int // branch 2: 1×1 → 3×3
	Reduce5x5, Out5x5 int // branch 3: 1×1 → 5×5
	PoolProj          int // branch 4: 3×3 max-pool → 1×1
}

// OutChannels is the channel count of the concatenated output.
func (c InceptionConfig) OutChannels() int { return c.Out1x1 + c.Out3x3 + c.Out5x5 + c.PoolProj }

// Inception is GoogLeNet's (v1) module: four branches over the same input,
// concatenated along channels. Each convolution is conv+BN+ReLU.
type Inception struct {
	branches [4]Layer
	outs     []*engine.Tensor // branch outputs, kept to avoid allocating
	douts    []*engine.Tensor // branch slices of dout
	out, dx  *engine.Tensor
	shape    []int
}

// NewInception builds the module for `in` input channels.
func NewInception(rng *rand.Rand, in int, c InceptionConfig) *Inception {
	pad := func(k int) ConvOptions { return ConvOptions{Padding: k / 2} }
	m := &Inception{}
	m.branches[0] = NewConvBNReLU(rng, in, c.Out1x1, 1, pad(1))
	m.branches[1] = (&Sequential{}).
		Append("0", NewConvBNReLU(rng, in, c.Reduce3x3, 1, pad(1))).
		Append("1", NewConvBNReLU(rng, c.Reduce3x3, c.Out3x3, 3, pad(3)))
	m.branches[2] = (&Sequential{}).
		Append("0", NewConvBNReLU(rng, in, c.Reduce5x5, 1, pad(1))).
		Append("1", NewConvBNReLU(rng, c.Reduce5x5, c.Out5x5, 5, pad(5)))
	m.branches[3] = (&Sequential{}).
		Append("0", NewMaxPool2D(3, 1, 1)).
		Append("1", NewConvBNReLU(rng, in, c.PoolProj, 1, pad(1)))
	m.outs = make([]*engine.Tensor, 4)
	m.douts = make([]*engine.Tensor, 4)
	return m
}

func (m *Inception) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	for i, b := range m.branches {
		y, err := b.Forward(x)
		if err != nil {
			return nil, err
		}
		m.outs[i] = y
	}
	var ok bool
	if m.shape, ok = engine.ConcatShape(m.shape, m.outs); !ok {
		return nil, &engine.ShapeError{Op: "Inception", Msg: "branch outputs do not line up"}
	}
	m.out = engine.EnsureLike(m.out, x, m.shape...)
	return m.out, engine.ConcatForward(m.out, m.outs)
}

func (m *Inception) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	if m.out == nil {
		return nil, backwardFirst(m)
	}
	for i, y := range m.outs {
		m.douts[i] = engine.EnsureLike(m.douts[i], y, y.Shape()...)
	}
	if err := engine.ConcatBackward(m.douts, dout); err != nil {
		return nil, err
	}
	// dx = Σ branch input gradients; each branch keeps its own dx buffer, so
	// the first two are summed straight into m.dx without a copy.
	var first *engine.Tensor
	for i, b := range m.branches {
		d, err := b.Backward(m.douts[i])
		if err != nil {
			return nil, err
		}
		switch i {
		case 0:
			first = d
		case 1:
			m.dx = engine.EnsureLike(m.dx, d, d.Shape()...)
			err = engine.Add(m.dx, first, d)
		default:
			err = engine.Add(m.dx, m.dx, d)
		}
		if err != nil {
			return nil, err
		}
	}
	return m.dx, nil
}

// Children names the branches branch1 … branch4, as torchvision does.
func (m *Inception) Children(visit func(string, Layer)) {
	for i, b := range m.branches {
		visit("branch"+string(rune('1'+i)), b)
	}
}

func (m *Inception) Walk(prefix string, visit func(string, *Param)) { walkChildren(m, prefix, visit) }

func (m *Inception) SetTraining(t bool) {
	for _, b := range m.branches {
		b.SetTraining(t)
	}
}
