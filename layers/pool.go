package layers

import "github.com/kiln-ml/kiln/engine"

// MaxPool2D is nn.MaxPool2d (floor mode); stride 0 means stride = kernel.
type MaxPool2D struct {
	stateless
	P       engine.Pool2DParams
	argmax  []int32
	inShape []int
	out, dx *engine.Tensor
	shapes  shapeCache
	// relu is the ReLU right before this layer in a Sequential (Append
	// links them). When that Sequential runs them (armed, for one Forward)
	// both run as one op: the ReLU passes x through and this layer applies
	// it to the pooled values, a quarter of the elements for a 2×2 pool
	// (engine.MaxPool2DReLUForward); fused says this step did.
	relu         *Act
	armed, fused bool
}

// NewMaxPool2D makes a square max-pooling window.
func NewMaxPool2D(kernel, stride, padding int) *MaxPool2D {
	return &MaxPool2D{P: engine.Pool2DSquare(kernel, stride, padding)}
}

func (m *MaxPool2D) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	shape, err := m.shapes.get(x.Shape(), func(in []int) ([]int, error) { return engine.Pool2DOutputShape(in, m.P) })
	if err != nil {
		return nil, err
	}
	m.out = engine.EnsureLike(m.out, x, shape...)
	if len(m.argmax) != m.out.Len() {
		// A new slice for a new shape, as EnsureLike makes a new buffer:
		// its device indices then have the new size too.
		engine.ReleaseArgmax(m.argmax)
		m.argmax = make([]int32, m.out.Len())
	}
	m.inShape = append(m.inShape[:0], x.Shape()...)
	m.fused = m.armed && m.relu != nil && m.relu.pooled
	m.armed = false
	if m.fused {
		return m.out, engine.MaxPool2DReLUForward(m.out, m.argmax, x, m.P)
	}
	return m.out, engine.MaxPool2DForward(m.out, m.argmax, x, m.P)
}

func (m *MaxPool2D) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	m.dx = engine.EnsureLike(m.dx, dout, m.inShape...)
	if m.fused {
		return m.dx, engine.MaxPool2DReLUBackward(m.dx, dout, m.out, m.argmax, m.P)
	}
	return m.dx, engine.MaxPool2DBackward(m.dx, dout, m.argmax, m.P)
}

// AvgPool2D is nn.AvgPool2d with count_include_pad=True (PyTorch's default).
type AvgPool2D struct {
	stateless
	P       engine.Pool2DParams
	inShape []int
	out, dx *engine.Tensor
	shapes  shapeCache
}

// NewAvgPool2D makes a square average-pooling window.
func NewAvgPool2D(kernel, stride, padding int) *AvgPool2D {
	return &AvgPool2D{P: engine.Pool2DSquare(kernel, stride, padding)}
}

func (a *AvgPool2D) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	shape, err := a.shapes.get(x.Shape(), func(in []int) ([]int, error) { return engine.Pool2DOutputShape(in, a.P) })
	if err != nil {
		return nil, err
	}
	a.out = engine.EnsureLike(a.out, x, shape...)
	a.inShape = append(a.inShape[:0], x.Shape()...)
	return a.out, engine.AvgPool2DForward(a.out, x, a.P)
}

func (a *AvgPool2D) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	a.dx = engine.EnsureLike(a.dx, dout, a.inShape...)
	return a.dx, engine.AvgPool2DBackward(a.dx, dout, a.P)
}

// GlobalAvgPool averages each channel's plane: (N,C,H,W) → (N,C).
type GlobalAvgPool struct {
	stateless
	inShape []int
	out, dx *engine.Tensor
}

func (g *GlobalAvgPool) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	if x.Rank() != 4 {
		return nil, &engine.ShapeError{Op: "GlobalAvgPool", Msg: "want (N,C,H,W)", Shapes: []string{x.String()}}
	}
	g.out = engine.EnsureLike(g.out, x, x.Dim(0), x.Dim(1))
	g.inShape = append(g.inShape[:0], x.Shape()...)
	return g.out, engine.GlobalAvgPoolForward(g.out, x)
}

func (g *GlobalAvgPool) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	g.dx = engine.EnsureLike(g.dx, dout, g.inShape...)
	return g.dx, engine.GlobalAvgPoolBackward(g.dx, dout)
}
