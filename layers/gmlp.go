package layers

import (
	"math/rand/v2"

	"github.com/kiln-ml/kiln/engine"
)

// SpatialGatingUnit is gMLP's SGU over tokens z: (N,T,2D) → (N,T,D):
// u ⊙ (W·LayerNorm(v) + b) with (u, v) the two channel halves of z and W a
// T×T map across token positions. Parameter names follow the common PyTorch
// implementation: norm.weight, norm.bias, proj.weight, proj.bias.
type SpatialGatingUnit struct {
	NormWeight, NormBias *Param
	ProjWeight, ProjBias *Param
	Eps                  float64
	saved                engine.SpatialGatingSaved
	z, out, dz           *engine.Tensor
}

// NewSpatialGatingUnit initialises W ≈ 0 (U(±1e-3)) and b = 1, so the unit
// starts as out ≈ u, as the paper prescribes for stable early training.
func NewSpatialGatingUnit(rng *rand.Rand, tokens, dim int) *SpatialGatingUnit {
	s := &SpatialGatingUnit{
		NormWeight: newParam(engine.Float32, true, dim),
		NormBias:   newParam(engine.Float32, true, dim),
		ProjWeight: newParam(engine.Float32, false, tokens, tokens),
		ProjBias:   newParam(engine.Float32, true, tokens),
		Eps:        1e-5,
	}
	fillNew(s.NormWeight.Value, 1)
	uniform(s.ProjWeight.Value, rng, 1e-3)
	fillNew(s.ProjBias.Value, 1)
	return s
}

// Mixing returns the T×T token-mixing weights, for plots.
func (s *SpatialGatingUnit) Mixing() *engine.Tensor { return s.ProjWeight.Value }

func (s *SpatialGatingUnit) Forward(z *engine.Tensor) (*engine.Tensor, error) {
	if z.Rank() != 3 || z.Dim(2)%2 != 0 {
		return nil, &engine.ShapeError{Op: "SpatialGatingUnit", Msg: "want tokens (N,T,2D)", Shapes: []string{z.String()}}
	}
	n, t, d := z.Dim(0), z.Dim(1), z.Dim(2)/2
	s.z = z
	if err := s.saved.EnsureOn(z, n, t, d); err != nil {
		return nil, err
	}
	s.out = engine.EnsureLike(s.out, z, n, t, d)
	return s.out, engine.SpatialGatingForward(s.out, &s.saved, z, s.NormWeight.Value, s.NormBias.Value,
		s.ProjWeight.Value, s.ProjBias.Value, s.Eps)
}

func (s *SpatialGatingUnit) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	if s.z == nil {
		return nil, backwardFirst(s)
	}
	s.dz = engine.EnsureLike(s.dz, s.z, s.z.Shape()...)
	return s.dz, engine.SpatialGatingBackward(s.dz, s.NormWeight.Grad, s.NormBias.Grad, s.ProjWeight.Grad,
		s.ProjBias.Grad, dout, s.z, &s.saved, s.NormWeight.Value, s.ProjWeight.Value)
}

func (s *SpatialGatingUnit) Walk(prefix string, visit func(string, *Param)) {
	visit(join(prefix, "norm.weight"), s.NormWeight)
	visit(join(prefix, "norm.bias"), s.NormBias)
	visit(join(prefix, "proj.weight"), s.ProjWeight)
	visit(join(prefix, "proj.bias"), s.ProjBias)
}

func (s *SpatialGatingUnit) SetTraining(bool) {}

// TokenLinear applies a Linear layer to every token of (N,T,D).
type TokenLinear struct {
	*Linear
	in2, out3, dx3 *engine.Tensor
	dout2          *engine.Tensor
	n, t           int
}

func newTokenLinear(rng *rand.Rand, in, out int) *TokenLinear {
	return &TokenLinear{Linear: NewLinear(rng, in, out, true)}
}

func (l *TokenLinear) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	l.n, l.t = x.Dim(0), x.Dim(1)
	var err error
	if l.in2, err = x.View(l.in2, l.n*l.t, x.Dim(2)); err != nil {
		return nil, err
	}
	y, err := l.Linear.Forward(l.in2)
	if err != nil {
		return nil, err
	}
	l.out3, err = y.View(l.out3, l.n, l.t, y.Dim(1))
	return l.out3, err
}

func (l *TokenLinear) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	if dout.Rank() != 3 {
		return nil, badGradRank(l, dout, 3)
	}
	var err error
	if l.dout2, err = dout.View(l.dout2, l.n*l.t, dout.Dim(2)); err != nil {
		return nil, err
	}
	dx, err := l.Linear.Backward(l.dout2)
	if err != nil || dx == nil {
		return nil, err
	}
	l.dx3, err = dx.View(l.dx3, l.n, l.t, dx.Dim(1))
	return l.dx3, err
}

// GMLPBlock is one gMLP block on tokens (N,T,D):
// x + proj_out(SGU(GELU(proj_in(LayerNorm(x))))), with proj_in D → F and
// proj_out F/2 → D.
type GMLPBlock struct {
	Norm     *LayerNorm
	ProjIn   *TokenLinear
	Act      *Act
	SGU      *SpatialGatingUnit
	ProjOut  *TokenLinear
	residual *Residual
	body     *Sequential
}

// NewGMLPBlock makes a block for T tokens of width d with hidden width ffn
// (even: the SGU halves it).
func NewGMLPBlock(rng *rand.Rand, tokens, d, ffn int) *GMLPBlock {
	b := &GMLPBlock{
		Norm:    NewLayerNorm(d),
		ProjIn:  newTokenLinear(rng, d, ffn),
		Act:     NewGELU(),
		SGU:     NewSpatialGatingUnit(rng, tokens, ffn/2),
		ProjOut: newTokenLinear(rng, ffn/2, d),
	}
	b.body = (&Sequential{}).Append("norm", b.Norm).Append("proj_in", b.ProjIn).Append("act", b.Act).
		Append("sgu", b.SGU).Append("proj_out", b.ProjOut)
	b.residual = NewResidual(b.body)
	return b
}

func (b *GMLPBlock) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	if x.Rank() != 3 {
		return nil, &engine.ShapeError{Op: "GMLPBlock", Msg: "want tokens (N,T,D)", Shapes: []string{x.String()}}
	}
	return b.residual.Forward(x)
}
func (b *GMLPBlock) Backward(d *engine.Tensor) (*engine.Tensor, error) { return b.residual.Backward(d) }
func (b *GMLPBlock) Walk(prefix string, visit func(string, *Param))    { walkChildren(b, prefix, visit) }

// Children visits the block's layers (norm, proj_in, act, sgu, proj_out)
// under the block's own name: the residual adds nothing to the names.
func (b *GMLPBlock) Children(visit func(string, Layer)) { visit("", b.body) }
func (b *GMLPBlock) SetTraining(t bool)                 { b.body.SetTraining(t) }
func (b *GMLPBlock) Training() bool                     { return b.body.Training() }

// PatchEmbed cuts an image into p×p patches and projects each to d channels
// (a stride-p convolution, named proj), giving tokens (N, H/p·W/p, d).
type PatchEmbed struct {
	Proj               *Conv2D
	map3, tokens, dmap *engine.Tensor
	dmap4              *engine.Tensor
	mapShape           []int
}

// NewPatchEmbed makes the embedding for `in` channels, patch size p, width d.
func NewPatchEmbed(rng *rand.Rand, in, p, d int) *PatchEmbed {
	return &PatchEmbed{Proj: NewConv2D(rng, in, d, p, ConvOptions{Stride: p})}
}

func (e *PatchEmbed) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	m, err := e.Proj.Forward(x) // (N, d, h, w)
	if err != nil {
		return nil, err
	}
	e.mapShape = append(e.mapShape[:0], m.Shape()...)
	n, d, t := m.Dim(0), m.Dim(1), m.Dim(2)*m.Dim(3)
	if e.map3, err = m.View(e.map3, n, d, t); err != nil {
		return nil, err
	}
	e.tokens = engine.EnsureLike(e.tokens, x, n, t, d)
	return e.tokens, engine.Transpose12(e.tokens, e.map3)
}

func (e *PatchEmbed) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	if e.mapShape == nil {
		return nil, backwardFirst(e)
	}
	if dout.Rank() != 3 {
		return nil, badGradRank(e, dout, 3)
	}
	n, t, d := dout.Dim(0), dout.Dim(1), dout.Dim(2)
	e.dmap = engine.EnsureLike(e.dmap, dout, n, d, t)
	if err := engine.Transpose12(e.dmap, dout); err != nil {
		return nil, err
	}
	var err error
	if e.dmap4, err = e.dmap.View(e.dmap4, e.mapShape...); err != nil {
		return nil, err
	}
	return e.Proj.Backward(e.dmap4)
}

// Children names the patch projection proj.
func (e *PatchEmbed) Children(visit func(string, Layer)) { visit("proj", e.Proj) }

func (e *PatchEmbed) Walk(prefix string, visit func(string, *Param)) { walkChildren(e, prefix, visit) }
func (e *PatchEmbed) SetTraining(bool)                               {}
func (e *PatchEmbed) SkipInputGrad(skip bool)                        { e.Proj.SkipInputGrad(skip) }

// TokenMean averages tokens: (N,T,D) → (N,D).
type TokenMean struct {
	stateless
	perm, dperm *engine.Tensor
	perm4       *engine.Tensor
	dperm4      *engine.Tensor
	dx          *engine.Tensor
	gap         GlobalAvgPool
}

func (m *TokenMean) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	if x.Rank() != 3 {
		return nil, &engine.ShapeError{Op: "TokenMean", Msg: "want tokens (N,T,D)", Shapes: []string{x.String()}}
	}
	n, t, d := x.Dim(0), x.Dim(1), x.Dim(2)
	m.perm = engine.EnsureLike(m.perm, x, n, d, t)
	if err := engine.Transpose12(m.perm, x); err != nil {
		return nil, err
	}
	var err error
	if m.perm4, err = m.perm.View(m.perm4, n, d, t, 1); err != nil {
		return nil, err
	}
	return m.gap.Forward(m.perm4)
}

func (m *TokenMean) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	d4, err := m.gap.Backward(dout) // (N, D, T, 1)
	if err != nil {
		return nil, err
	}
	n, d, t := d4.Dim(0), d4.Dim(1), d4.Dim(2)
	if m.dperm, err = d4.View(m.dperm, n, d, t); err != nil {
		return nil, err
	}
	m.dx = engine.EnsureLike(m.dx, dout, n, t, d)
	return m.dx, engine.Transpose12(m.dx, m.dperm)
}
