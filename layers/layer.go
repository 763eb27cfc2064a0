// Package layers builds networks from engine ops: each layer is a small struct
// with a Forward and a Backward pass, in llm.c's style rather than through a
// tape. A layer keeps the activations its backward pass needs and its own
// output buffers, so a training step with unchanged shapes allocates nothing.
//
// The contract every layer keeps:
//   - Forward(x) returns an output the layer owns; it stays valid until the
//     next Forward. Backward(dout) must follow the Forward it differentiates.
//   - Backward returns dx (owned by the layer, overwritten each call) and
//     accumulates (+=) the gradients of the layer's parameters.
//   - Parameters and buffers carry PyTorch's names and layouts, so a model's
//     state_dict and Kiln's safetensors files are interchangeable.
//   - On the GPU a layer owns the buffers it makes with engine.EnsureLike and
//     frees them in ReleaseBuffers (BufferOwner, release.go); Release frees
//     a whole model, parameters included.
package layers

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/kiln-ml/kiln/engine"
)

// Layer is one differentiable stage of a network.
type Layer interface {
	// Forward computes the output for x. The output belongs to the layer.
	Forward(x *engine.Tensor) (*engine.Tensor, error)
	// Backward takes the gradient of the loss with respect to the last
	// output and returns the gradient with respect to the last input,
	// accumulating parameter gradients on the way.
	Backward(dout *engine.Tensor) (*engine.Tensor, error)
	// Walk visits parameters and buffers under their full names
	// (prefix + "." + local name).
	Walk(prefix string, visit func(name string, p *Param))
	// SetTraining switches between training and evaluation behaviour
	// (batch statistics, dropout), like PyTorch's train()/eval().
	SetTraining(training bool)
}

// Param is a named tensor of a layer's state. Trainable parameters have a
// Grad; buffers such as running statistics have none.
type Param struct {
	Value *engine.Tensor
	Grad  *engine.Tensor
	// NoDecay marks biases and normalisation parameters, which optimisers
	// leave out of weight decay.
	NoDecay bool
	// Internal marks run state that checkpoints keep but weight files and
	// state_dicts leave out (a dropout layer's random-stream position).
	Internal bool
	// gradBuf, on the first of a model's parameters, is the flat buffer
	// its gradients are views of (FlattenModelGrads): the model owns it.
	gradBuf *engine.Tensor
	// settable: the layer's backward can write this gradient instead of
	// adding to it (ClearGrad); cleared: it is to, as none has written it
	// since ClearGrad.
	settable, cleared bool
}

func newParam(dt engine.DType, noDecay bool, shape ...int) *Param {
	return &Param{Value: engine.New(dt, shape...), Grad: engine.New(dt, shape...), NoDecay: noDecay}
}

func newBuffer(dt engine.DType, shape ...int) *Param {
	return &Param{Value: engine.New(dt, shape...)}
}

// inputGradSkipper is implemented by layers that can skip computing dx, which
// the first layer of a network never needs.
type inputGradSkipper interface{ SkipInputGrad(skip bool) }

// stateless supplies Walk and SetTraining for layers without state.
type stateless struct{}

func (stateless) Walk(string, func(string, *Param)) {}
func (stateless) SetTraining(bool)                  {}

func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// backwardFirst is the error of a Backward with no Forward before it.
func backwardFirst(l Layer) error {
	return fmt.Errorf("layers: %T.Backward before its Forward: there is nothing to differentiate", l)
}

// badGradRank is the error of a Backward given a gradient of another rank
// than the layer's output.
func badGradRank(l Layer, dout *engine.Tensor, rank int) error {
	return &engine.ShapeError{Op: fmt.Sprintf("%T.Backward", l), Msg: fmt.Sprintf("the gradient has shape %v; the output has %d dimensions", dout.Shape(), rank)}
}

// Params lists a layer's trainable parameters with their full names, in a
// fixed order, each once: a *Param two layers share (tied weights) under
// its first name, as PyTorch's parameters() gives it, so that an optimiser
// steps it once with the sum of both layers' gradients.
func Params(l Layer) (names []string, params []*Param) {
	seen := map[*Param]bool{}
	l.Walk("", func(name string, p *Param) {
		if p.Grad != nil && !seen[p] {
			seen[p] = true
			names = append(names, name)
			params = append(params, p)
		}
	})
	return names, params
}

// State lists every parameter and buffer by full name: the state_dict.
func State(l Layer) map[string]*engine.Tensor {
	m := map[string]*engine.Tensor{}
	l.Walk("", func(name string, p *Param) {
		if !p.Internal {
			m[name] = p.Value
		}
	})
	return m
}

// FullState is State plus internal run state, for checkpoints.
func FullState(l Layer) map[string]*engine.Tensor {
	m := map[string]*engine.Tensor{}
	l.Walk("", func(name string, p *Param) { m[name] = p.Value })
	return m
}

// LoadState copies tensors into the layer's parameters and buffers by name.
// Every entry must be present with the right shape; names the model does not
// have are an error, as with PyTorch's strict load_state_dict. Internal run
// state is loaded when present and left as it is otherwise.
func LoadState(l Layer, state map[string]*engine.Tensor) error {
	seen := map[string]bool{}
	var err error
	l.Walk("", func(name string, p *Param) {
		if err != nil {
			return
		}
		src, ok := state[name]
		if !ok && p.Internal {
			return
		}
		if !ok {
			err = fmt.Errorf("load weights: missing %q", name)
			return
		}
		if !src.SameShape(p.Value.Shape()...) {
			err = fmt.Errorf("load weights: %q has shape %v, model wants %v", name, src.Shape(), p.Value.Shape())
			return
		}
		seen[name] = true
		err = p.Value.CopyFrom(src)
	})
	if err != nil {
		return err
	}
	for name := range state {
		if !seen[name] && !strings.HasSuffix(name, ".num_batches_tracked") {
			return fmt.Errorf("load weights: unexpected %q (not in this model)", name)
		}
	}
	return nil
}

// Convert changes the dtype of every parameter, gradient and buffer, e.g. to
// Float64 for gradient checks.
func Convert(l Layer, dt engine.DType) {
	l.Walk("", func(_ string, p *Param) {
		p.Value = p.Value.As(dt)
		if p.Grad != nil {
			p.Grad = engine.New(dt, p.Grad.Shape()...)
		}
	})
}

// ToDevice moves every parameter, gradient and buffer of l to device d
// (float32 only on the GPU). Internal run state, such as a dropout layer's
// stream position, stays on the CPU where the host reads it. The layers'
// own buffers follow their inputs on the next Forward.
func ToDevice(l Layer, d engine.Device) error {
	var err error
	defer releaseStaleGradBufs(l)
	l.Walk("", func(name string, p *Param) {
		if err != nil || p.Internal {
			return
		}
		v, e := p.Value.To(d)
		if e != nil {
			err = fmt.Errorf("move %s to %v: %w", name, d, e)
			return
		}
		if v != p.Value {
			p.Value.Release() // leaving the GPU: the copy replaces it
		}
		p.Value = v
		if p.Grad != nil {
			g, e := p.Grad.To(d)
			if e != nil {
				err = fmt.Errorf("move %s's gradient to %v: %w", name, d, e)
				return
			}
			if g != p.Grad {
				p.Grad.Release()
			}
			p.Grad = g
		}
	})
	return err
}

// ZeroGrad clears every parameter gradient and returns the first error (a
// failed device call).
func ZeroGrad(l Layer) error {
	var err error
	l.Walk("", func(_ string, p *Param) {
		if p.Grad != nil && err == nil {
			err = p.Grad.Zero()
			p.cleared = false
		}
	})
	return err
}

// CountParams is the number of trainable scalars, a shared *Param once.
func CountParams(l Layer) int {
	_, ps := Params(l)
	n := 0
	for _, p := range ps {
		n += p.Value.Len()
	}
	return n
}

// uniform fills t with U(-bound, bound): PyTorch's default initialisation of
// convolution and linear layers uses bound = 1/sqrt(fan_in) for both weight
// (kaiming_uniform with a=√5) and bias. t is a CPU tensor (constructors and
// tests initialise parameters before ToDevice), written in place, so
// nothing can fail.
func uniform(t *engine.Tensor, rng *rand.Rand, bound float64) {
	f32, f64 := t.Float32(), t.Float64()
	for i := 0; i < t.Len(); i++ {
		v := (rng.Float64()*2 - 1) * bound
		if f64 != nil {
			f64[i] = v
		} else {
			f32[i] = float32(v)
		}
	}
}

// fillNew sets every element of a float32 parameter a constructor has just
// made: it is on the CPU, where nothing can fail.
func fillNew(t *engine.Tensor, v float32) {
	d := t.Float32()
	for i := range d {
		d[i] = v
	}
}

func fanInBound(fanIn int) float64 { return 1 / math.Sqrt(float64(max(fanIn, 1))) }

// shapeCache remembers an output shape for the last input shape, so layers
// do not rebuild shape slices every step.
type shapeCache struct {
	in, out []int
}

func (c *shapeCache) get(in []int, compute func([]int) ([]int, error)) ([]int, error) {
	if c.out != nil && slices.Equal(c.in, in) {
		return c.out, nil
	}
	out, err := compute(in)
	if err != nil {
		return nil, err
	}
	c.in, c.out = append(c.in[:0], in...), out
	return out, nil
}

// Training reports whether l is in training mode: its Training method's
// answer where it has one (Sequential and the zoo's models do), and true
// otherwise, the mode every layer starts in.
func Training(l Layer) bool {
	if m, ok := l.(interface{ Training() bool }); ok {
		return m.Training()
	}
	return true
}

// Evaluating puts l in evaluation mode and returns the function that puts
// back the mode l was in, so that an evaluation leaves a model that its
// caller had set to eval in eval, as Keras's predict and PyTorch's
// torch.no_grad blocks leave the module's mode alone.
func Evaluating(l Layer) (restore func()) {
	was := Training(l)
	l.SetTraining(false)
	return func() { l.SetTraining(was) }
}
