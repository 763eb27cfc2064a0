package layers

import "github.com/kiln-ml/kiln/engine"

// Device memory a model holds is freed when its owner says so, not when the
// garbage collector finds it (engine/devmem.go): parameters and gradients
// belong to the model, and each layer owns the buffers it made with
// engine.EnsureLike (outputs, input gradients, saved activations) and its
// argmax slices. A layer's fields that point at other layers' tensors (its
// input x, a child's output, views) are forgotten, not released.

// BufferOwner is a layer that keeps device buffers between passes. A layer
// of one's own that makes buffers with engine.EnsureLike implements it, or
// its buffers stay allocated until the process ends.
type BufferOwner interface {
	// ReleaseBuffers frees the layer's own buffers and forgets them, and
	// those of any layer it holds that its Children do not name. The layer
	// stays usable: its next Forward makes new ones.
	ReleaseBuffers()
}

// ReleaseBuffers frees what l and every layer inside it keep between passes,
// leaving the parameters: the model still trains and evaluates, and
// allocates its buffers again on its next Forward.
func ReleaseBuffers(l Layer) {
	WalkLayers(l, func(_ string, c Layer) {
		if b, ok := c.(BufferOwner); ok {
			b.ReleaseBuffers()
		}
	})
}

// Release frees all the device memory of l: its buffers (ReleaseBuffers)
// and the values and gradients of its parameters and buffers. l must not be
// used on the device afterwards. On the CPU it does nothing that matters.
func Release(l Layer) {
	ReleaseBuffers(l)
	l.Walk("", func(_ string, p *Param) {
		p.Value.Release()
		p.Grad.Release()
		p.gradBuf.Release() // the flat buffer of FlattenModelGrads, if any
	})
}

func (a *Act) ReleaseBuffers() {
	engine.Drop(&a.out, &a.dx)
	a.x, a.derived = nil, false // the derivative kept in dx goes with it
}

func (a *ChannelAttention) ReleaseBuffers() {
	engine.ReleaseArgmax(a.maxArg)
	a.maxArg = nil
	engine.Drop(&a.gmpOut, &a.stacked, &a.summed, &a.dstacked, &a.dscale4, &a.dgap, &a.dgmp, &a.out, &a.dx)
	a.x, a.scale, a.scale4, a.dsum = nil, nil, nil, nil // the input, sig's output and views
	a.stackedHalves, a.logitHalves, a.dstackedHalves, a.dstHalves = halves{}, halves{}, halves{}, halves{}
	// Children names only the layers with parameters.
	a.gap.ReleaseBuffers()
	a.relu.ReleaseBuffers()
	a.sig.ReleaseBuffers()
}

func (s *SpatialAttention) ReleaseBuffers() {
	engine.ReleaseArgmax(s.argmax)
	s.argmax = nil
	engine.Drop(&s.pooled, &s.out, &s.dx, &s.datt)
	s.x, s.att = nil, nil // the input and sig's output
	s.sig.ReleaseBuffers()
}

func (r *Residual) ReleaseBuffers() { engine.Drop(&r.out, &r.dx) }

func (f *Flatten) ReleaseBuffers() { f.view, f.dview = nil, nil }

func (c *Conv2D) ReleaseBuffers() {
	engine.Drop(&c.out, &c.dx)
	c.x = nil
}

func (d *Dropout) ReleaseBuffers() { engine.Drop(&d.mask, &d.out, &d.dx) }

func (s *SpatialGatingUnit) ReleaseBuffers() {
	engine.Drop(&s.out, &s.dz, &s.saved.Norm, &s.saved.Mixed, &s.saved.Mean, &s.saved.RStd)
	s.z = nil
}

func (l *TokenLinear) ReleaseBuffers() {
	l.Linear.ReleaseBuffers()
	l.in2, l.out3, l.dx3, l.dout2 = nil, nil, nil, nil
}

// ReleaseBuffers releases the residual around the block's body, which
// Children does not name.
func (b *GMLPBlock) ReleaseBuffers() { b.residual.ReleaseBuffers() }

func (e *PatchEmbed) ReleaseBuffers() {
	engine.Drop(&e.tokens, &e.dmap)
	e.map3, e.dmap4 = nil, nil
}

func (m *TokenMean) ReleaseBuffers() {
	engine.Drop(&m.perm, &m.dx)
	m.perm4, m.dperm, m.dperm4 = nil, nil, nil
	m.gap.ReleaseBuffers()
}

func (m *Inception) ReleaseBuffers() {
	engine.Drop(&m.out, &m.dx)
	for i := range m.douts {
		engine.Drop(&m.douts[i])
		m.outs[i] = nil // the branches' own
	}
}

func (l *Linear) ReleaseBuffers() {
	engine.Drop(&l.out, &l.dx, &l.dpre)
	l.x = nil
}

func (b *BatchNorm2D) ReleaseBuffers() {
	engine.Drop(&b.out, &b.dx, &b.mean, &b.invStd)
	b.x = nil
}

func (l *LayerNorm) ReleaseBuffers() {
	engine.Drop(&l.out, &l.dx, &l.mean, &l.rstd)
	l.x = nil
}

func (m *MaxPool2D) ReleaseBuffers() {
	engine.ReleaseArgmax(m.argmax)
	m.argmax = nil
	engine.Drop(&m.out, &m.dx)
}

func (a *AvgPool2D) ReleaseBuffers() { engine.Drop(&a.out, &a.dx) }

func (g *GlobalAvgPool) ReleaseBuffers() { engine.Drop(&g.out, &g.dx) }
