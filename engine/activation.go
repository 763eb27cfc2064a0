package engine

import (
	"fmt"
	"math"
	"strings"
)

// Activation functions applied element by element: ReLU, GELU (the exact erf
// form, PyTorch's nn.GELU default), Sigmoid and Tanh.

// Activation names an element-wise non-linearity. The zero value is not a
// valid activation, so a forgotten setting is an error rather than a silent
// default.
type Activation uint8

const (
	// ReLU is max(x, 0); its gradient at 0 is 0, as in PyTorch.
	ReLU Activation = iota + 1
	// GELU is x·Φ(x) with the exact normal CDF Φ (nn.GELU(approximate="none")).
	GELU
	// Sigmoid is 1/(1+e^-x).
	Sigmoid
	// Tanh is the hyperbolic tangent.
	Tanh
)

func (a Activation) String() string {
	switch a {
	case ReLU:
		return "relu"
	case GELU:
		return "gelu"
	case Sigmoid:
		return "sigmoid"
	case Tanh:
		return "tanh"
	}
	return fmt.Sprintf("Activation(%d)", uint8(a))
}

// ParseActivation reads "relu", "gelu", "sigmoid" or "tanh" (any case).
func ParseActivation(s string) (Activation, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "relu":
		return ReLU, nil
	case "gelu":
		return GELU, nil
	case "sigmoid":
		return Sigmoid, nil
	case "tanh":
		return Tanh, nil
	}
	return 0, fmt.Errorf("unknown activation %q (want relu, gelu, sigmoid or tanh)", s)
}

// NeedsInput reports whether ActivationBackward needs the forward input x
// (GELU). The others differentiate from the output alone, so their forward
// pass may run in place (out == x).
func (a Activation) NeedsInput() bool { return a == GELU }

func (a Activation) valid() bool { return a >= ReLU && a <= Tanh }

// ActivationForward computes out = f(x). out may be x itself (in place); for
// GELU that destroys the input its backward pass needs, so keep x separate
// when training a GELU.
//
//	out: any shape  x: same shape as out
func ActivationForward(out, x *Tensor, kind Activation) error {
	const op = "ActivationForward"
	if !kind.valid() {
		return &ShapeError{Op: op, Msg: "unknown activation " + kind.String()}
	}
	if out == nil || x == nil {
		return shapeErr(op, "out and x are required", "out", out, "x", x)
	}
	dev, dt, err := agreeDev(op, out, x)
	if err != nil {
		return err
	}
	if !sameShape(out.shape, x.shape) {
		return shapeErr(op, "out and x differ in shape", "out", out, "x", x)
	}
	if dev == CUDA {
		return activationForwardCUDA(out, x, kind)
	}
	pick(dt, runActivation[float32], runActivation[float64])(out, x, nil, nil, kind, false)
	return nil
}

// ActivationBackward computes dx = dout·f'(x), overwriting dx. ReLU, Sigmoid
// and Tanh read the forward output out (ReLU takes x instead when out is nil);
// GELU reads the forward input x. The tensor an activation does not read may be
// nil. dx may alias dout, x or out.
//
//	dx, dout, x, out: all the same shape
func ActivationBackward(dx, dout, x, out *Tensor, kind Activation) error {
	const op = "ActivationBackward"
	if !kind.valid() {
		return &ShapeError{Op: op, Msg: "unknown activation " + kind.String()}
	}
	if dx == nil || dout == nil {
		return shapeErr(op, "dx and dout are required", "dx", dx, "dout", dout)
	}
	switch {
	case kind == ReLU && out == nil:
		out = x
		if out == nil {
			return shapeErr(op, "relu needs out or x", "x", x, "out", out)
		}
	case kind == GELU && x == nil:
		return shapeErr(op, "gelu needs x", "x", x)
	case kind != ReLU && kind != GELU && out == nil:
		return shapeErr(op, kind.String()+" needs out", "out", out)
	}
	dev, dt, err := agreeDev(op, dx, dout, x, out)
	if err != nil {
		return err
	}
	if !sameShape(dx.shape, dout.shape) || (x != nil && !sameShape(x.shape, dx.shape)) ||
		(out != nil && !sameShape(out.shape, dx.shape)) {
		return shapeErr(op, "dx, dout, x and out differ in shape", "dx", dx, "dout", dout, "x", x, "out", out)
	}
	if dev == CUDA {
		return activationBackwardCUDA(dx, dout, x, out, kind)
	}
	pick(dt, runActivation[float32], runActivation[float64])(dx, dout, x, out, kind, true)
	return nil
}

// parallelMinElems is the element count below which element-wise ops stay on
// the calling goroutine: handing out work costs more than it saves.
const parallelMinElems = 1 << 15

type activationTask[T Float] struct {
	dst, a, x, y []T
	kind         Activation
	backward     bool
	deriv        bool // GELU with its derivative kept: geluDeriv
}

func (t *activationTask[T]) run(_, lo, hi int) {
	if t.deriv {
		geluDeriv(t.dst[lo:hi], t.a[lo:hi], t.y[lo:hi], t.backward)
	} else if t.backward {
		activationBackward(t.dst[lo:hi], t.a[lo:hi], subOrNil(t.x, lo, hi), subOrNil(t.y, lo, hi), t.kind)
	} else {
		activationForward(t.dst[lo:hi], t.a[lo:hi], t.kind)
	}
}

var activationTasks = [2]taskPool{
	{New: func() any { return new(activationTask[float32]) }},
	{New: func() any { return new(activationTask[float64]) }},
}

// runActivation runs the forward (dst = f(a)) or backward (dst = a·f'(x, y))
// kernel, split over the workers when the tensor is large.
func runActivation[T Float](dstT, aT, xT, yT *Tensor, kind Activation, backward bool) {
	runActivationTask(activationTask[T]{dst: dataAs[T](dstT), a: dataAs[T](aT), x: dataAs[T](xT), y: dataAs[T](yT),
		kind: kind, backward: backward})
}

// runActivationTask runs task over its whole dst, on the workers when it is
// large.
func runActivationTask[T Float](task activationTask[T]) {
	n := len(task.dst)
	if n < parallelMinElems {
		task.run(0, 0, n)
		return
	}
	p := &activationTasks[dtypeIndex[T]()]
	t := p.Get().(*activationTask[T])
	*t = task
	parallelFor(n, t)
	*t = activationTask[T]{}
	p.Put(t)
}

// GELUForwardDeriv computes out = GELU(x) and deriv = GELU'(x) = Φ(x) +
// x·φ(x) in one pass, so that the backward is a product (GELUBackwardDeriv)
// instead of another erf and exp: on a CPU those are GELU's cost (it runs
// at about a third of a memory-bound op's rate), and the forward has them
// already. out's bits are ActivationForward's and GELUBackwardDeriv's are
// ActivationBackward's (float32 in C, and float64; the portable float32
// loops round the derivative once more). The CPU's only: on the GPU, where
// GELU costs its memory traffic, ActivationBackward recomputes.
//
//	out, deriv, x: the same shape
func GELUForwardDeriv(out, deriv, x *Tensor) error {
	return runGELUDeriv("GELUForwardDeriv", out, x, deriv, false)
}

// GELUBackwardDeriv computes dx = dout·deriv, deriv from GELUForwardDeriv;
// dx may be dout or deriv.
//
//	dx, dout, deriv: the same shape
func GELUBackwardDeriv(dx, dout, deriv *Tensor) error {
	return runGELUDeriv("GELUBackwardDeriv", dx, dout, deriv, true)
}

// runGELUDeriv checks and runs either pass: dst = GELU(a) and y = f'(a)
// forward, dst = a·y backward.
func runGELUDeriv(op string, dst, a, y *Tensor, backward bool) error {
	if dst == nil || a == nil || y == nil {
		return shapeErr(op, "three tensors are required", "dst", dst, "a", a, "y", y)
	}
	dev, dt, err := agreeDev(op, dst, a, y)
	if err != nil {
		return err
	}
	if dev != CPU {
		return &ShapeError{Op: op, Msg: "the CPU's: on the GPU ActivationBackward recomputes GELU's derivative"}
	}
	if !sameShape(dst.shape, a.shape) || !sameShape(y.shape, a.shape) {
		return shapeErr(op, "tensors differ in shape", "dst", dst, "a", a, "y", y)
	}
	pick(dt, runGELUDerivOn[float32], runGELUDerivOn[float64])(dst, a, y, backward)
	return nil
}

func runGELUDerivOn[T Float](dstT, aT, yT *Tensor, backward bool) {
	runActivationTask(activationTask[T]{dst: dataAs[T](dstT), a: dataAs[T](aT), y: dataAs[T](yT), backward: backward,
		deriv: true})
}

// geluDeriv is runGELUDeriv's loop: float32 in C, float64 here.
func geluDeriv[T Float](dst, a, y []T, backward bool) {
	if geluDerivC(dst, a, y, backward) {
		return
	}
	if backward {
		for i, g := range a {
			dst[i] = g * y[i]
		}
		return
	}
	for i, v := range a {
		f := float64(v)
		cdf := 0.5 * (1 + math.Erf(f*math.Sqrt2/2))
		pdf := invSqrt2Pi * math.Exp(-0.5*f*f)
		dst[i] = T(f * cdf)
		y[i] = T(cdf + f*pdf)
	}
}

const invSqrt2Pi = 0.3989422804014327 // 1/√(2π)

func activationForward[T Float](out, x []T, kind Activation) {
	out = out[:len(x)]
	if activationC(out, x, nil, nil, kind, false) {
		return
	}
	switch kind {
	case ReLU:
		for i, v := range x {
			if v < 0 {
				v = 0
			}
			out[i] = v
		}
	case GELU:
		for i, v := range x {
			f := float64(v)
			out[i] = T(0.5 * f * (1 + math.Erf(f*math.Sqrt2/2)))
		}
	case Sigmoid:
		for i, v := range x {
			out[i] = T(1 / (1 + math.Exp(-float64(v))))
		}
	case Tanh:
		for i, v := range x {
			out[i] = T(math.Tanh(float64(v)))
		}
	}
}

// activationBackward computes dx = dout·f'. x is the forward input (GELU), y
// the forward output (ReLU, where the input does as well, Sigmoid, Tanh).
func activationBackward[T Float](dx, dout, x, y []T, kind Activation) {
	dx = dx[:len(dout)]
	if kind == ReLU && y == nil {
		y = x // ReLU's derivative reads the sign of either
	}
	if activationC(dx, dout, x, y, kind, true) {
		return
	}
	switch kind {
	case ReLU:
		y = y[:len(dout)]
		for i, g := range dout {
			if y[i] > 0 {
				dx[i] = g
			} else {
				dx[i] = 0
			}
		}
	case GELU:
		x = x[:len(dout)]
		for i, g := range dout {
			f := float64(x[i])
			cdf := 0.5 * (1 + math.Erf(f*math.Sqrt2/2))
			pdf := invSqrt2Pi * math.Exp(-0.5*f*f)
			dx[i] = T(float64(g) * (cdf + f*pdf))
		}
	case Sigmoid:
		y = y[:len(dout)]
		for i, g := range dout {
			s := y[i]
			dx[i] = g * s * (1 - s)
		}
	case Tanh:
		y = y[:len(dout)]
		for i, g := range dout {
			t := y[i]
			dx[i] = g * (1 - t*t)
		}
	}
}

// subOrNil is s[lo:hi], or nil for a nil s (an optional argument).
func subOrNil[T Float](s []T, lo, hi int) []T {
	if s == nil {
		return nil
	}
	return s[lo:hi]
}
