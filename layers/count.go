package layers

import (
	"fmt"
	"math"
	"strings"
)

// CountParamsFor is CountParams of the model Build(name, s) would make,
// computed from the architecture alone: nothing is allocated, so a caller
// can refuse a model too large for memory before building it. A count past
// MaxInt64 (a width no machine could hold) saturates at MaxInt64. It refuses
// exactly the names and specs Build refuses.
func CountParamsFor(name string, s Spec) (int64, error) {
	if err := checkSpec(name, s); err != nil {
		return 0, err
	}
	var n counter
	var err error
	switch name = strings.ToLower(name); name {
	case "lenet":
		err = n.lenet(s)
	case "mlp":
		n.mlp(s)
	case "cnn":
		err = n.cnn(s)
	case "inception":
		err = twoPools(s, name)
		n.convBN(s.Channels, 32, 3)
		n.inception(32, inceptionModule1)
		n.inception(inceptionModule1.OutChannels(), inceptionModule2)
		n.linear(inceptionModule2.OutChannels(), s.Outputs())
	case "cbam":
		err = twoPools(s, name)
		n.convBN(s.Channels, 32, 3)
		n.cbam(32, 8)
		n.inception(32, cbamModule)
		n.convBN(cbamModule.OutChannels(), 64, 3)
		n.cbam(64, 8)
		n.linear(64, s.Outputs())
	case "gmlp":
		err = n.gmlp(s)
	default:
		return 0, fmt.Errorf("internal: model %s has no parameter count", name)
	}
	if err != nil {
		return 0, fmt.Errorf("model %s: %w", name, err)
	}
	return int64(n), nil
}

// counter sums parameter counts, saturating at MaxInt64 so that absurd
// widths compare as too large instead of wrapping around.
type counter int64

// add adds the product of factors (all non-negative).
func (c *counter) add(factors ...int) { c.addN(1, factors...) }

// addN adds times × the product of factors.
func (c *counter) addN(times int, factors ...int) {
	p := int64(times)
	for _, f := range factors {
		p = mulSat(p, int64(f))
	}
	if p > math.MaxInt64-int64(*c) {
		*c = math.MaxInt64
		return
	}
	*c += counter(p)
}

func mulSat(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}

// linear is a Linear with bias; conv a Conv2D with bias; convBN a bias-free
// convolution with its batch norm's weight and bias (the running statistics
// are buffers, not parameters).
func (c *counter) linear(in, out int)       { c.add(in, out); c.add(out) }
func (c *counter) conv(in, out, k int)      { c.add(out, in, k, k); c.add(out) }
func (c *counter) convBN(in, out, k int)    { c.add(out, in, k, k); c.add(2, out) }
func (c *counter) layerNorm(d int)          { c.add(2, d) }
func (c *counter) cbam(ch, reduction int)   { c.add(2, ch, max(ch/reduction, 1)); c.add(2, 7, 7) }
func (c *counter) linearTimes(n, in, o int) { c.addN(n, in, o); c.addN(n, o) }

func (c *counter) inception(in int, m InceptionConfig) {
	c.convBN(in, m.Out1x1, 1)
	c.convBN(in, m.Reduce3x3, 1)
	c.convBN(m.Reduce3x3, m.Out3x3, 3)
	c.convBN(in, m.Reduce5x5, 1)
	c.convBN(m.Reduce5x5, m.Out5x5, 5)
	c.convBN(in, m.PoolProj, 1)
}

func (c *counter) lenet(s Spec) error {
	flat, err := lenetFlat(s)
	if err != nil {
		return err
	}
	c.conv(s.Channels, 6, 5)
	c.conv(6, 16, 5)
	c.linear(flat, 120)
	c.linear(120, 84)
	c.linear(84, s.Outputs())
	return nil
}

func (c *counter) mlp(s Spec) {
	in := s.Channels * s.Height * s.Width
	w, d, def := mlpWidths(s)
	if def {
		c.linear(in, 256)
		c.linear(256, 128)
		c.linear(128, s.Outputs())
		return
	}
	c.linear(in, w)
	c.linearTimes(d-1, w, w)
	c.linear(w, s.Outputs())
}

func (c *counter) cnn(s Spec) error {
	hidden, err := cnnHidden(s)
	if err != nil {
		return err
	}
	in := s.Channels
	for _, ch := range cnnChannels {
		c.convBN(in, ch, 3)
		in = ch
	}
	c.linear(in*pooled(s.Height, 2)*pooled(s.Width, 2), hidden)
	c.linear(hidden, s.Outputs())
	return nil
}

// gmlp counts the patch embedding, depth blocks (each a LayerNorm, proj_in
// to 2·width, the spatial gating unit on width channels with its token
// mixing, proj_out back), the final LayerNorm and the head.
func (c *counter) gmlp(s Spec) error {
	width, depth, tokens, err := gmlpShape(s)
	if err != nil {
		return err
	}
	c.conv(s.Channels, width, gmlpPatch)
	var block counter
	block.layerNorm(width)
	block.add(width, 2, width)
	block.add(2, width)
	block.layerNorm(width)
	block.add(tokens, tokens)
	block.add(tokens)
	block.linear(width, width)
	c.addN(depth, int(block))
	c.layerNorm(width)
	c.linear(width, s.Outputs())
	return nil
}
