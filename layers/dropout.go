package layers

import "github.com/kiln-ml/kiln/engine"

// Dropout is nn.Dropout (inverted: scaled by 1/(1−p) in training, identity in
// evaluation). Its mask stream is seeded, so runs are reproducible.
type Dropout struct {
	P        float64
	rng      engine.DropoutRNG
	offset   *Param // the stream position, kept in checkpoints
	training bool
	mask     *engine.Tensor
	out, dx  *engine.Tensor
}

// NewDropout drops with probability p, drawing masks from seed.
func NewDropout(p float64, seed uint64) *Dropout {
	return &Dropout{P: p, rng: engine.DropoutRNG{Seed: seed}, training: true,
		offset: &Param{Value: engine.New(engine.Float64, 1), Internal: true}}
}

func (d *Dropout) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	d.out = engine.EnsureLike(d.out, x, x.Shape()...)
	if !d.training || d.P == 0 {
		return d.out, engine.DropoutForward(d.out, nil, x, d.P, false, nil)
	}
	d.mask = engine.EnsureLike(d.mask, x, x.Shape()...)
	// Offsets stay below 2⁵³, so the float64 buffer holds them exactly.
	off, err := d.offset.Value.Get(0)
	if err != nil {
		return d.out, err
	}
	d.rng.Offset = uint64(off)
	if err := engine.DropoutForward(d.out, d.mask, x, d.P, true, &d.rng); err != nil {
		return d.out, err
	}
	return d.out, d.offset.Value.SetAt(0, float64(d.rng.Offset))
}

func (d *Dropout) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	d.dx = engine.EnsureLike(d.dx, dout, dout.Shape()...)
	var mask *engine.Tensor
	if d.training && d.P != 0 {
		mask = d.mask
	}
	return d.dx, engine.DropoutBackward(d.dx, dout, mask)
}

func (d *Dropout) Walk(prefix string, visit func(string, *Param)) {
	visit(join(prefix, "rng_offset"), d.offset)
}
func (d *Dropout) SetTraining(t bool) { d.training = t }

// RNGState returns the mask stream's position.
func (d *Dropout) RNGState() engine.DropoutRNG {
	// The offset is internal run state, which ToDevice leaves on the CPU:
	// reading it cannot fail.
	return engine.DropoutRNG{Seed: d.rng.Seed, Offset: uint64(d.offset.Value.At(0))}
}

// SetRNGState moves the mask stream to a position saved by RNGState.
func (d *Dropout) SetRNGState(s engine.DropoutRNG) error {
	d.rng.Seed = s.Seed
	return d.offset.Value.SetAt(0, float64(s.Offset))
}
