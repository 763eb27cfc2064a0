package main

import (
	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

// ChannelScale multiplies each channel of its input by a learned gain
// (CaiT's LayerScale, per channel): y[n,c,h,w] = x[n,c,h,w]·γ[c], γ starting
// at 1. It is written against the public API alone: a layer is anything
// with Forward, Backward, Walk and SetTraining (layers.Layer), and a
// trainable parameter is a layers.Param with a Value and a Grad.
//
// It computes element by element through At and SetAt, which keeps it short
// and lets the gradient check run it in float64; a layer that must be fast
// would work on x.Float32() and have a CUDA path, as Kiln's own do.
type ChannelScale struct {
	Gamma *layers.Param // (C)

	x, out, dx *engine.Tensor // the last input, and buffers reused each step
}

// ChannelScale is a layer, and owns buffers a GPU run must be able to free.
var (
	_ layers.Layer       = (*ChannelScale)(nil)
	_ layers.BufferOwner = (*ChannelScale)(nil)
)

// NewChannelScale makes the layer for c channels of dtype dt.
func NewChannelScale(dt engine.DType, c int) *ChannelScale {
	g := &layers.Param{Value: engine.New(dt, c), Grad: engine.New(dt, c), NoDecay: true}
	for i := 0; i < c; i++ {
		g.Value.SetAt(i, 1)
	}
	return &ChannelScale{Gamma: g}
}

// Forward scales x: (N,C,H,W) → (N,C,H,W).
func (s *ChannelScale) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	if x.Rank() != 4 || x.Dim(1) != s.Gamma.Value.Len() {
		return nil, &engine.ShapeError{Op: "ChannelScale", Msg: "want (N,C,H,W) with C gains", Shapes: []string{x.String()}}
	}
	s.x = x
	s.out = engine.EnsureLike(s.out, x, x.Shape()...)
	plane := x.Dim(2) * x.Dim(3)
	for i := 0; i < x.Len(); i++ {
		s.out.SetAt(i, x.At(i)*s.Gamma.Value.At(i/plane%x.Dim(1)))
	}
	return s.out, nil
}

// Backward accumulates dγ[c] += Σ dout·x over channel c and returns
// dx = dout·γ (Kiln's convention: parameter gradients add up, input
// gradients are overwritten).
func (s *ChannelScale) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	x, c := s.x, s.Gamma.Value.Len()
	s.dx = engine.EnsureLike(s.dx, x, x.Shape()...)
	plane := x.Dim(2) * x.Dim(3)
	for i := 0; i < x.Len(); i++ {
		ch := i / plane % c
		s.Gamma.Grad.SetAt(ch, s.Gamma.Grad.At(ch)+dout.At(i)*x.At(i))
		s.dx.SetAt(i, dout.At(i)*s.Gamma.Value.At(ch))
	}
	return s.dx, nil
}

// ReleaseBuffers frees the buffers Forward and Backward keep
// (layers.BufferOwner), so layers.Release frees everything a model with this
// layer holds on a GPU; the next Forward makes them again.
func (s *ChannelScale) ReleaseBuffers() {
	engine.Drop(&s.out, &s.dx)
	s.x = nil
}

// Walk names the gains "gamma" under the layer's name, so checkpoints,
// weight files and the optimiser find them.
func (s *ChannelScale) Walk(prefix string, visit func(string, *layers.Param)) {
	name := "gamma"
	if prefix != "" {
		name = prefix + ".gamma"
	}
	visit(name, s.Gamma)
}

// SetTraining does nothing: the layer acts alike in training and evaluation.
func (s *ChannelScale) SetTraining(bool) {}
