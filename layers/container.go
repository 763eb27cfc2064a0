package layers

import (
	"cmp"
	"fmt"
	"reflect"
	"strconv"

	"github.com/kiln-ml/kiln/engine"
)

// Sequential runs its children one after another, like nn.Sequential.
type Sequential struct {
	names  []string
	layers []Layer
	// AfterBackward, when set, runs after child i's Backward (i counts
	// down): the gradients of children i and after are final then, which
	// data-parallel training uses to start summing them across ranks while
	// the earlier children's backward runs.
	AfterBackward func(i int) error
	// distinct: no layer instance appears twice in s (checkDistinct), as
	// checked since the last Append.
	distinct bool
	// eval: the mode of the last SetTraining (a new Sequential trains, as a
	// new nn.Module does), so that an evaluation can put it back.
	eval bool
}

// NewSequential names its children "0", "1", … as nn.Sequential does.
func NewSequential(children ...Layer) *Sequential {
	s := &Sequential{}
	for _, c := range children {
		s.Append(strconv.Itoa(len(s.layers)), c)
	}
	return s
}

// Append adds a child under a name of its own (e.g. "conv1"), which becomes
// the prefix of its parameters' names.
func (s *Sequential) Append(name string, l Layer) *Sequential {
	if a, ok := l.(*Act); ok && a.Kind == engine.ReLU && len(s.layers) > 0 {
		switch prev := s.layers[len(s.layers)-1].(type) {
		case *BatchNorm2D:
			prev.relu = a // batch norm then ReLU: one op where it can (norm.go)
		case *Linear:
			prev.relu = a // Linear then ReLU: one op (linear.go)
		}
	}
	if m, ok := l.(*MaxPool2D); ok && len(s.layers) > 0 {
		if a, ok := s.layers[len(s.layers)-1].(*Act); ok && a.Kind == engine.ReLU {
			a.pool, m.relu = m, a // ReLU then max pool: one op where it can (pool.go)
		}
	}
	s.names = append(s.names, name)
	s.layers = append(s.layers, l)
	s.distinct = false
	return s
}

// arm lets child i run as one op with the neighbour Append linked it to,
// for its next Forward, when that neighbour is beside it here: the same
// layers used alone or in another Sequential run as themselves.
func (s *Sequential) arm(i int) {
	at := func(j int) Layer {
		if j < 0 || j >= len(s.layers) {
			return nil
		}
		return s.layers[j]
	}
	switch l := s.layers[i].(type) {
	case *Linear:
		l.armed = l.relu != nil && at(i+1) == Layer(l.relu)
	case *BatchNorm2D:
		l.armed = l.relu != nil && at(i+1) == Layer(l.relu)
	case *Act:
		l.armed = l.pool != nil && at(i+1) == Layer(l.pool)
	case *MaxPool2D:
		l.armed = l.relu != nil && at(i-1) == Layer(l.relu)
	}
}

// checkDistinct refuses a model in which one layer instance appears twice
// (a ReLU shared between stages, a Linear applied twice for tied weights):
// a Kiln layer keeps the activations of its last Forward for its Backward,
// so the second use would overwrite what the first one's backward needs,
// and the gradients would be wrong without a word.
func checkDistinct(root Layer) error {
	seen := map[Layer]string{}
	var err error
	WalkLayers(root, func(name string, l Layer) {
		v := reflect.ValueOf(l)
		if err != nil || v.Kind() != reflect.Pointer || v.Type().Elem().Size() == 0 {
			return // a layer of no state: Go may give every one the same address
		}
		if first, ok := seen[l]; ok {
			err = fmt.Errorf("layers: the same %T is at %s and at %s: a layer keeps its last forward's activations for backward, so each place needs its own instance (for tied weights, two layers sharing one *Param)",
				l, cmp.Or(first, "the top"), cmp.Or(name, "the top"))
			return
		}
		seen[l] = name
	})
	return err
}

// Layers returns the children in order.
func (s *Sequential) Layers() []Layer { return s.layers }

func (s *Sequential) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	if !s.distinct {
		if err := checkDistinct(s); err != nil {
			return nil, err
		}
		s.distinct = true
	}
	var err error
	for i, l := range s.layers {
		s.arm(i)
		if x, err = l.Forward(x); err != nil {
			return nil, err
		}
	}
	return x, nil
}

func (s *Sequential) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	var err error
	for i := len(s.layers) - 1; i >= 0; i-- {
		if dout, err = s.layers[i].Backward(dout); err != nil {
			return nil, err
		}
		if s.AfterBackward != nil {
			if err := s.AfterBackward(i); err != nil {
				return nil, err
			}
		}
	}
	return dout, nil
}

// Children visits the children under the names they were appended with.
func (s *Sequential) Children(visit func(string, Layer)) {
	for i, l := range s.layers {
		visit(s.names[i], l)
	}
}

func (s *Sequential) Walk(prefix string, visit func(string, *Param)) { walkChildren(s, prefix, visit) }

func (s *Sequential) SetTraining(t bool) {
	s.eval = !t
	for _, l := range s.layers {
		l.SetTraining(t)
	}
}

// Training reports the mode of the last SetTraining, as PyTorch's
// module.training does.
func (s *Sequential) Training() bool { return !s.eval }

// SkipInputGrad passes the request to the first child: the layers after it
// still need their input gradients. A leading Flatten only reshapes, so the
// request goes on to the layer after it (an MLP's first Linear would
// otherwise compute an input gradient nobody reads: a third of its work).
func (s *Sequential) SkipInputGrad(skip bool) {
	for _, l := range s.layers {
		if f, ok := l.(*Flatten); ok {
			f.skipDx = skip
			continue
		}
		if k, ok := l.(inputGradSkipper); ok {
			k.SkipInputGrad(skip)
		}
		return
	}
}

// Residual computes y = x + f(x); f must keep the shape.
type Residual struct {
	Body Layer
	out  *engine.Tensor
	dx   *engine.Tensor
}

// NewResidual wraps body; the body's parameter names are kept as they are.
func NewResidual(body Layer) *Residual { return &Residual{Body: body} }

func (r *Residual) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	y, err := r.Body.Forward(x)
	if err != nil {
		return nil, err
	}
	r.out = engine.EnsureLike(r.out, x, x.Shape()...)
	if err := engine.Add(r.out, x, y); err != nil {
		return nil, err
	}
	return r.out, nil
}

func (r *Residual) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	d, err := r.Body.Backward(dout)
	if err != nil {
		return nil, err
	}
	r.dx = engine.EnsureLike(r.dx, dout, dout.Shape()...)
	return r.dx, engine.Add(r.dx, dout, d)
}

// Children visits the body under the residual's own name.
func (r *Residual) Children(visit func(string, Layer)) { visit("", r.Body) }

func (r *Residual) Walk(prefix string, visit func(string, *Param)) { walkChildren(r, prefix, visit) }

func (r *Residual) SetTraining(t bool) { r.Body.SetTraining(t) }
func (r *Residual) Training() bool     { return Training(r.Body) }

// Flatten reshapes (N, …) to (N, features) without copying.
type Flatten struct {
	stateless
	view, dview *engine.Tensor
	inShape     []int
	skipDx      bool // the layer after it computes no input gradient
}

func (f *Flatten) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	if x.Rank() < 1 {
		return nil, &engine.ShapeError{Op: "Flatten", Msg: "want (N, …)", Shapes: []string{x.String()}}
	}
	f.inShape = append(f.inShape[:0], x.Shape()...)
	var err error
	f.view, err = x.View(f.view, x.Dim(0), x.Len()/max(x.Dim(0), 1))
	return f.view, err
}

func (f *Flatten) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	if f.skipDx {
		return nil, nil
	}
	var err error
	f.dview, err = dout.View(f.dview, f.inShape...)
	return f.dview, err
}
