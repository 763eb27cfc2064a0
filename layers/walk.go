package layers

import "github.com/kiln-ml/kiln/engine"

// A layer made of other layers names them once, in Children; the names of
// its parameters (Walk) and of its layers (WalkLayers) both come from there.

// Parent is a layer made of other layers.
type Parent interface {
	// Children visits each child layer with its name, the part its
	// parameters' names take after the parent's ("conv1", "branch2"); a
	// child named "" shares its parent's prefix (a residual's body).
	Children(visit func(name string, child Layer))
}

// WalkLayers visits l and every layer inside it, parents before their
// children, each with its full name: the prefix of its parameters' names
// ("cbam1.spatial"; "" for l itself).
func WalkLayers(l Layer, visit func(name string, l Layer)) { walkLayers("", l, visit) }

func walkLayers(prefix string, l Layer, visit func(string, Layer)) {
	visit(prefix, l)
	if p, ok := l.(Parent); ok {
		p.Children(func(name string, c Layer) { walkLayers(childName(prefix, name), c, visit) })
	}
}

// walkChildren is Walk for a Parent: each child's parameters under the
// child's name.
func walkChildren(p Parent, prefix string, visit func(string, *Param)) {
	p.Children(func(name string, c Layer) { c.Walk(childName(prefix, name), visit) })
}

func childName(prefix, name string) string {
	if name == "" {
		return prefix
	}
	return join(prefix, name)
}

// What a layer can show of itself, for kiln board and kiln plot: the trainer
// asks for these by interface, so a layer of one's own can show them too.

// AttentionMapper is a layer that computes a spatial attention map over its
// input: it is drawn over the input images.
type AttentionMapper interface {
	Layer
	// Map is the last forward pass's map, (N,1,H,W), values in (0,1).
	Map() *engine.Tensor
	// MapKind names the kind of map in visuals.json ("cbam_spatial").
	MapKind() string
}

// TokenMixer is a layer that mixes tokens with a learned (T,T) matrix.
type TokenMixer interface {
	Layer
	// Mixing is the matrix: row t holds how much each token feeds token t.
	Mixing() *engine.Tensor
}
