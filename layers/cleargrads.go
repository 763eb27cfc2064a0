package layers

import "github.com/kiln-ml/kiln/engine"

// Zeroing a step's gradients is a pass over every one of them, and the
// first backward write then reads them again to add to zeros: two passes
// over the largest of a model's arrays that a product with β = 0 makes
// unnecessary (mlp at batch 128: its 3 MB first-layer weight gradient).
// ClearGrad lets a layer that can overwrite its gradients do so on the
// next backward; every other gradient is zeroed by the caller as before.

// ClearGrad marks p's gradient cleared where p's layer can write it instead
// of adding to it (engine.SetGrads): the layer's next backward overwrites
// it, and the gradient's contents mean nothing until then. It reports
// whether it did; where it did not, the caller zeroes p.Grad itself. After
// the backward pass, SettleGrad zeroes what no layer wrote.
func (p *Param) ClearGrad() bool {
	if p.Grad == nil || !p.settable || p.Grad.Device() != engine.CPU {
		return false
	}
	p.cleared = true
	return true
}

// SettleGrad reports whether p's gradient is still cleared (no backward
// reached its layer since ClearGrad), and ends that: the caller zeroes
// p.Grad before anything reads it.
func (p *Param) SettleGrad() bool {
	c := p.cleared
	p.cleared = false
	return c
}

// gradModeOf is how a backward pass that writes the gradients of ps (nil
// entries skipped) writes them: SetGrads if every one of them is cleared,
// else AddGrads after zeroing the cleared ones (never the case when
// ClearGrad is called on all of a model's parameters at once). Either way
// they are no longer cleared.
func gradModeOf(ps ...*Param) (engine.GradMode, error) {
	all := true
	for _, p := range ps {
		all = all && (p == nil || p.cleared)
	}
	if all {
		for _, p := range ps {
			if p != nil {
				p.cleared = false
			}
		}
		return engine.SetGrads, nil
	}
	for _, p := range ps {
		if p != nil && p.SettleGrad() {
			if err := p.Grad.Zero(); err != nil {
				return engine.AddGrads, err
			}
		}
	}
	return engine.AddGrads, nil
}
