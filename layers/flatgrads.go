package layers

import (
	"fmt"

	"github.com/kiln-ml/kiln/engine"
)

// FlattenGrads moves the gradients of params into one flat buffer on their
// device, in their order, and makes each Param.Grad a view of its part, so
// that clearing every gradient, scaling them or all-reducing them across
// ranks is one call on the buffer instead of one per parameter. The values
// are kept. The caller owns the buffer (Release it); the views need no
// release. A later ToDevice or Convert replaces the views with tensors of
// their own: GradsIn tells.
func FlattenGrads(params []*Param) (*engine.Tensor, error) {
	n := 0
	for _, p := range params {
		n += p.Grad.Len()
	}
	if len(params) == 0 {
		return nil, fmt.Errorf("flatten gradients: no parameters")
	}
	first := params[0].Grad
	flat, err := engine.NewOn(first.Device(), first.DType(), n)
	if err != nil {
		return nil, fmt.Errorf("flatten gradients: %w", err)
	}
	off := 0
	for _, p := range params {
		g, err := gradView(flat, p.Grad, off)
		if err != nil {
			flat.Release()
			return nil, err
		}
		p.Grad.Release() // a view of an earlier buffer releases nothing
		p.Grad = g
		off += g.Len()
	}
	return flat, nil
}

// gradView is flat's part [off, off+len(g)) shaped like g, holding g's values.
func gradView(flat, g *engine.Tensor, off int) (*engine.Tensor, error) {
	if g.Device() != flat.Device() || g.DType() != flat.DType() {
		return nil, fmt.Errorf("flatten gradients: a %v gradient on %v among %v ones on %v",
			g.DType(), g.Device(), flat.DType(), flat.Device())
	}
	part, err := flat.Rows(off, g.Len())
	if err != nil {
		return nil, err
	}
	v, err := part.Reshape(g.Shape()...)
	if err != nil {
		return nil, err
	}
	if err := v.CopyFrom(g); err != nil {
		return nil, fmt.Errorf("flatten gradients: %w", err)
	}
	return v, nil
}

// GradsIn reports whether every gradient of params still is its view of
// flat, in order, as FlattenGrads left them.
func GradsIn(flat *engine.Tensor, params []*Param) bool {
	if flat == nil {
		return false
	}
	off := 0
	for _, p := range params {
		if !p.Grad.ViewsAt(flat, off) {
			return false
		}
		off += p.Grad.Len()
	}
	return off == flat.Len()
}

// FlattenModelGrads makes the gradients of params, a model's (Params, in
// its order), views of one flat buffer that the model owns, so that zeroing
// them on the GPU is one memset (engine.ZeroAll): Release frees the buffer
// with the model, and ToDevice, which gives the gradients tensors of their
// own, frees it then. It does nothing when they already are its views; a
// buffer they left (another FlattenGrads took them) is freed here.
func FlattenModelGrads(params []*Param) error {
	if len(params) == 0 || GradsIn(params[0].gradBuf, params) {
		return nil
	}
	flat, err := FlattenGrads(params)
	if err != nil {
		return err
	}
	old := params[0].gradBuf
	params[0].gradBuf = flat
	old.Release()
	return nil
}

// ModelGradBuffer is the flat buffer FlattenModelGrads made for params, or
// nil when their gradients are not its views (not flattened, or moved since).
// The model owns it: data-parallel training all-reduces it in place.
func ModelGradBuffer(params []*Param) *engine.Tensor {
	if len(params) == 0 || !GradsIn(params[0].gradBuf, params) {
		return nil
	}
	return params[0].gradBuf
}

// releaseStaleGradBufs frees the flat gradient buffer of l's parameters if
// their gradients are no longer its views (ToDevice made them their own).
func releaseStaleGradBufs(l Layer) {
	_, params := Params(l)
	if len(params) > 0 && params[0].gradBuf != nil && !GradsIn(params[0].gradBuf, params) {
		params[0].gradBuf.Release()
		params[0].gradBuf = nil
	}
}
