package layers

import "github.com/kiln-ml/kiln/engine"

// Dropout is nn.Dropout (inverted: scaled by 1/(1−p) in training, identity in
// evaluation). Its mask stream is seeded, so runs are reproducible.
type Dropout struct {
	P        float64
	rng      engine.DropoutRNG
	offset   *Param // the stream position, kept in checkpoints
	shard    dropoutShard
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
	row := uint64(x.Len() / max(x.Dim(0), 1))
	d.shard.row = row
	d.rng.Offset = uint64(off) + uint64(d.shard.start)*row
	if err := engine.DropoutForward(d.out, d.mask, x, d.P, true, &d.rng); err != nil {
		return d.out, err
	}
	next := d.rng.Offset
	if d.shard.total > 0 {
		next = uint64(off) + uint64(d.shard.total)*row
	}
	return d.out, d.offset.Value.SetAt(0, float64(next))
}

// dropoutShard places a rank's input in the global batch of data-parallel
// training: rows [start, start+n) of total (total 0: the input is the
// whole batch).
type dropoutShard struct {
	start, total int
	row          uint64 // the units of one row of the last input
}

// Shard says that the next inputs are rows [start, start+n) of a global
// batch of total rows that several ranks share. The layer then draws those
// rows' masks from the stream one process would draw the whole batch's
// from, and moves its stream past the whole batch: the ranks drop
// different units, every rank's stream stays at the same place, and the
// ranks together drop what one process would. Shard(0, 0) undoes it.
func (d *Dropout) Shard(start, total int) {
	d.shard.start, d.shard.total = start, total
}

// SkipBatch is the step of a rank whose shard of the global batch is empty:
// it moves the stream past the whole batch as the other ranks' Forward
// does, so all stay together. (A rank that has never had a row to drop from
// knows no row size; it keeps none, as its stream is never read.)
func (d *Dropout) SkipBatch() error {
	if !d.training || d.P == 0 || d.shard.total == 0 {
		return nil
	}
	off, err := d.offset.Value.Get(0)
	if err != nil {
		return err
	}
	return d.offset.Value.SetAt(0, off+float64(uint64(d.shard.total)*d.shard.row))
}

// Dropouts returns the dropout layers of l, in walk order.
func Dropouts(l Layer) []*Dropout {
	var ds []*Dropout
	WalkLayers(l, func(_ string, l Layer) {
		if d, ok := l.(*Dropout); ok {
			ds = append(ds, d)
		}
	})
	return ds
}

func (d *Dropout) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	if d.out == nil {
		return nil, backwardFirst(d)
	}
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
func (d *Dropout) Training() bool     { return d.training }

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
