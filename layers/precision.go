package layers

import "github.com/kiln-ml/kiln/engine"

// productLayer is a layer whose weight enters matrix products: Conv2D,
// Linear (and TokenLinear, through it) and the SGU's token mixing.
type productLayer interface{ productWeight() *Param }

func (c *Conv2D) productWeight() *Param            { return c.Weight }
func (l *Linear) productWeight() *Param            { return l.Weight }
func (s *SpatialGatingUnit) productWeight() *Param { return s.ProjWeight }

// SetPrecision makes every convolution, linear layer and token mixing in l
// compute its products in p (engine.Precision: the inputs rounded to p, the
// sums in float32, as PyTorch's autocast); the parameters stay float32. It
// checks p against the device of l's parameters first and changes nothing
// when that device cannot compute in p. Call it after ToDevice: a move makes
// new tensors, at fp32.
func SetPrecision(l Layer, p engine.Precision) error {
	var err error
	WalkLayers(l, func(_ string, c Layer) {
		if m, ok := c.(productLayer); ok && err == nil {
			err = p.Check(m.productWeight().Value.Device())
		}
	})
	if err != nil {
		return err
	}
	WalkLayers(l, func(_ string, c Layer) {
		if m, ok := c.(productLayer); ok {
			m.productWeight().Value.SetPrecision(p)
		}
	})
	return nil
}
