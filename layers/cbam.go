package layers

import (
	"math/rand/v2"

	"github.com/kiln-ml/kiln/engine"
)

// ChannelAttention is CBAM's channel gate: a shared two-layer MLP over the
// global average- and max-pooled channel descriptors, summed, through a
// sigmoid, scaling each channel: y = x ⊙ σ(MLP(avg(x)) + MLP(max(x))).
type ChannelAttention struct {
	FC1, FC2 *Linear // C → C/r → C, bias-free (the 1×1 convs of the paper)
	relu     *Act
	sig      *Act

	gap            *GlobalAvgPool
	maxArg         []int32        // each plane's max position
	gmpOut         *engine.Tensor // max descriptor (N, C)
	stacked        *engine.Tensor // (2N, C): average rows, then max rows
	summed, scale  *engine.Tensor // (N, C), scale viewed as (N, C, 1, 1)
	scale4         *engine.Tensor
	dstacked, dsum *engine.Tensor
	dscale4        *engine.Tensor
	dgap, dgmp     *engine.Tensor
	out, dx, x     *engine.Tensor

	stackedHalves, logitHalves, dstackedHalves, dstHalves halves
}

// NewChannelAttention makes the gate for c channels with reduction ratio r.
func NewChannelAttention(rng *rand.Rand, c, r int) *ChannelAttention {
	hidden := max(c/r, 1)
	return &ChannelAttention{
		FC1: NewLinear(rng, c, hidden, false), FC2: NewLinear(rng, hidden, c, false),
		relu: NewReLU(), sig: NewSigmoid(), gap: &GlobalAvgPool{},
	}
}

func (a *ChannelAttention) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	if x.Rank() != 4 {
		return nil, &engine.ShapeError{Op: "ChannelAttention", Msg: "want (N,C,H,W)", Shapes: []string{x.String()}}
	}
	n, c := x.Dim(0), x.Dim(1)
	a.x = x
	avg, err := a.gap.Forward(x)
	if err != nil {
		return nil, err
	}
	a.gmpOut = engine.EnsureLike(a.gmpOut, x, n, c)
	if len(a.maxArg) != n*c {
		engine.ReleaseArgmax(a.maxArg) // a new shape: new indices (MaxPool2D.Forward)
		a.maxArg = make([]int32, n*c)
	}
	if err := engine.GlobalMaxPoolForward(a.gmpOut, a.maxArg, x); err != nil {
		return nil, err
	}
	a.stacked = engine.EnsureLike(a.stacked, x, 2*n, c)
	top, bottom, err := a.stackedHalves.of(a.stacked)
	if err != nil {
		return nil, err
	}
	if err := top.CopyFrom(avg); err != nil {
		return nil, err
	}
	if err := bottom.CopyFrom(a.gmpOut); err != nil {
		return nil, err
	}
	hdn, err := a.FC1.Forward(a.stacked)
	if err != nil {
		return nil, err
	}
	if hdn, err = a.relu.Forward(hdn); err != nil {
		return nil, err
	}
	logits, err := a.FC2.Forward(hdn) // (2N, C)
	if err != nil {
		return nil, err
	}
	a.summed = engine.EnsureLike(a.summed, x, n, c)
	ltop, lbottom, err := a.logitHalves.of(logits)
	if err != nil {
		return nil, err
	}
	if err := engine.Add(a.summed, ltop, lbottom); err != nil {
		return nil, err
	}
	if a.scale, err = a.sig.Forward(a.summed); err != nil {
		return nil, err
	}
	if a.scale4, err = a.scale.View(a.scale4, n, c, 1, 1); err != nil {
		return nil, err
	}
	a.out = engine.EnsureLike(a.out, x, x.Shape()...)
	return a.out, engine.BroadcastMultiplyForward(a.out, x, a.scale4)
}

func (a *ChannelAttention) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	x := a.x
	if x == nil {
		return nil, backwardFirst(a)
	}
	n, c := x.Dim(0), x.Dim(1)
	a.dx = engine.EnsureLike(a.dx, x, x.Shape()...)
	a.dscale4 = engine.EnsureLike(a.dscale4, x, n, c, 1, 1)
	// The scale's gradient now; x's comes in one pass at the end.
	if err := engine.BroadcastMultiplyBackward(nil, a.dscale4, dout, x, a.scale4); err != nil {
		return nil, err
	}
	dscale, err := a.dscale4.View(a.dsum, n, c)
	if err != nil {
		return nil, err
	}
	a.dsum = dscale
	dsummed, err := a.sig.Backward(dscale)
	if err != nil {
		return nil, err
	}
	// Both halves of the stacked logits received the same gradient.
	a.dstacked = engine.EnsureLike(a.dstacked, x, 2*n, c)
	dtop, dbottom, err := a.dstackedHalves.of(a.dstacked)
	if err != nil {
		return nil, err
	}
	if err := dtop.CopyFrom(dsummed); err != nil {
		return nil, err
	}
	if err := dbottom.CopyFrom(dsummed); err != nil {
		return nil, err
	}
	dh, err := a.FC2.Backward(a.dstacked)
	if err != nil {
		return nil, err
	}
	if dh, err = a.relu.Backward(dh); err != nil {
		return nil, err
	}
	dst, err := a.FC1.Backward(dh) // (2N, C)
	if err != nil {
		return nil, err
	}
	a.dgap = engine.EnsureLike(a.dgap, x, n, c)
	a.dgmp = engine.EnsureLike(a.dgmp, x, n, c)
	gtop, gbottom, err := a.dstHalves.of(dst)
	if err != nil {
		return nil, err
	}
	if err := a.dgap.CopyFrom(gtop); err != nil {
		return nil, err
	}
	if err := a.dgmp.CopyFrom(gbottom); err != nil {
		return nil, err
	}
	// dout ⊙ scale, plus both poolings' gradients, in one pass (the bits of
	// the three backward ops and two adds it replaces).
	return a.dx, engine.ChannelGateBackward(a.dx, dout, a.scale4, a.dgap, a.dgmp, a.maxArg)
}

// Children names the two layers of the shared MLP fc1 and fc2.
func (a *ChannelAttention) Children(visit func(string, Layer)) {
	visit("fc1", a.FC1)
	visit("fc2", a.FC2)
}

func (a *ChannelAttention) Walk(prefix string, visit func(string, *Param)) {
	walkChildren(a, prefix, visit)
}

func (a *ChannelAttention) SetTraining(bool) {}

// The stacked (2N, C) tensors hold the average-pooled rows on top and the
// max-pooled rows below; rows views of them are cached so each step
// allocates nothing.
type halves struct{ top, bottom *engine.Tensor }

func (h *halves) of(t *engine.Tensor) (top, bottom *engine.Tensor, err error) {
	n := t.Dim(0) / 2
	if h.top, err = t.RowsView(h.top, 0, n); err != nil {
		return nil, nil, err
	}
	if h.bottom, err = t.RowsView(h.bottom, n, n); err != nil {
		return nil, nil, err
	}
	return h.top, h.bottom, nil
}

// SpatialAttention is CBAM's spatial gate: the channel-wise mean and max
// maps, stacked, a 7×7 convolution to one map, a sigmoid, and a per-pixel
// scale: y = x ⊙ σ(conv([mean_c(x); max_c(x)])).
type SpatialAttention struct {
	Conv       *Conv2D
	sig        *Act
	pooled     *engine.Tensor
	argmax     []int32
	att        *engine.Tensor // (N,1,H,W), kept for attention-map plots
	x, out, dx *engine.Tensor
	datt       *engine.Tensor
}

// NewSpatialAttention uses the paper's 7×7 kernel, bias-free.
func NewSpatialAttention(rng *rand.Rand) *SpatialAttention {
	return &SpatialAttention{Conv: NewConv2D(rng, 2, 1, 7, ConvOptions{Padding: 3, NoBias: true}), sig: NewSigmoid()}
}

// Map returns the last attention map (N,1,H,W), values in (0,1).
func (s *SpatialAttention) Map() *engine.Tensor { return s.att }

func (s *SpatialAttention) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	if x.Rank() != 4 {
		return nil, &engine.ShapeError{Op: "SpatialAttention", Msg: "want (N,C,H,W)", Shapes: []string{x.String()}}
	}
	n, h, w := x.Dim(0), x.Dim(2), x.Dim(3)
	s.x = x
	s.pooled = engine.EnsureLike(s.pooled, x, n, 2, h, w)
	if len(s.argmax) != n*h*w {
		engine.ReleaseArgmax(s.argmax) // a new shape: new indices (MaxPool2D.Forward)
		s.argmax = make([]int32, n*h*w)
	}
	if err := engine.ChannelPoolForward(s.pooled, s.argmax, x); err != nil {
		return nil, err
	}
	logits, err := s.Conv.Forward(s.pooled)
	if err != nil {
		return nil, err
	}
	if s.att, err = s.sig.Forward(logits); err != nil {
		return nil, err
	}
	s.out = engine.EnsureLike(s.out, x, x.Shape()...)
	return s.out, engine.BroadcastMultiplyForward(s.out, x, s.att)
}

func (s *SpatialAttention) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	x := s.x
	if x == nil {
		return nil, backwardFirst(s)
	}
	s.dx = engine.EnsureLike(s.dx, x, x.Shape()...)
	s.datt = engine.EnsureLike(s.datt, x, s.att.Shape()...)
	// The map's gradient now; x's comes in one pass at the end.
	if err := engine.BroadcastMultiplyBackward(nil, s.datt, dout, x, s.att); err != nil {
		return nil, err
	}
	dlogits, err := s.sig.Backward(s.datt)
	if err != nil {
		return nil, err
	}
	dpooled, err := s.Conv.Backward(dlogits)
	if err != nil {
		return nil, err
	}
	// dout ⊙ map, plus the channel poolings' gradients, in one pass (the bits
	// of the backward ops and the add it replaces).
	return s.dx, engine.SpatialGateBackward(s.dx, dout, s.att, dpooled, s.argmax)
}

// Children names the 7×7 convolution conv.
func (s *SpatialAttention) Children(visit func(string, Layer)) { visit("conv", s.Conv) }

func (s *SpatialAttention) Walk(prefix string, visit func(string, *Param)) {
	walkChildren(s, prefix, visit)
}

// MapKind says what Map holds: CBAM's spatial attention.
func (s *SpatialAttention) MapKind() string { return "cbam_spatial" }

func (s *SpatialAttention) SetTraining(bool) {}

// NewCBAM is the Convolutional Block Attention Module: channel attention,
// then spatial attention, named channel and spatial.
func NewCBAM(rng *rand.Rand, channels, reduction int) *Sequential {
	return (&Sequential{}).
		Append("channel", NewChannelAttention(rng, channels, reduction)).
		Append("spatial", NewSpatialAttention(rng))
}
