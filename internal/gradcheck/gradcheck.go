// Package gradcheck verifies analytic gradients against central finite
// differences in float64, the check every op and layer of Kiln passes.
//
// The scalar being differentiated is L = Σ out·dy for a fixed random dy, so
// dL/dout = dy and one backward pass with dy yields every input's gradient.
// Float32 is too coarse for this: at the small steps the check needs, its
// rounding swamps the difference (tinygrad's gradcheck shows the same).
package gradcheck

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// Options tune a check. The zero value is sensible for smooth ops.
type Options struct {
	Step float64 // finite-difference step (default 1e-6)
	ATol float64 // absolute tolerance (default 1e-6)
	RTol float64 // relative tolerance (default 1e-5)
	Seed uint64  // seed of the upstream gradient dy
	// Names label inputs in failure messages.
	Names []string
	// Sample, when positive, checks only that many seeded-random elements of
	// each input: whole models have too many for every one.
	Sample int
}

// Check perturbs each element of each input (Float64 tensors, modified in
// place and restored), runs forward twice per element, and compares
// (L(x+h) − L(x−h)) / 2h with the gradient backward returns for that input.
// backward gets dy and returns one gradient per input, in order; a nil entry
// skips that input.
func Check(t testing.TB, inputs []*engine.Tensor,
	forward func() (*engine.Tensor, error),
	backward func(dy *engine.Tensor) ([]*engine.Tensor, error), o Options) {
	t.Helper()
	if o.Step == 0 {
		o.Step = 1e-6
	}
	if o.ATol == 0 {
		o.ATol = 1e-6
	}
	if o.RTol == 0 {
		o.RTol = 1e-5
	}
	for i, in := range inputs {
		if in.DType() != engine.Float64 {
			t.Fatalf("gradcheck: input %d is %v; checks run in float64", i, in.DType())
		}
	}
	out, err := forward()
	if err != nil {
		t.Fatalf("forward: %v", err)
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x9e3779b97f4a7c15))
	dy := engine.New(engine.Float64, out.Shape()...)
	for i := range dy.Float64() {
		dy.Float64()[i] = rng.Float64()*2 - 1
	}
	dyCopy := dy.Clone()
	grads, err := backward(dy)
	if err != nil {
		t.Fatalf("backward: %v", err)
	}
	if len(grads) != len(inputs) {
		t.Fatalf("backward returned %d gradients for %d inputs", len(grads), len(inputs))
	}
	// Copy now: later forward passes may reuse the buffers backward returned.
	analytic := make([][]float64, len(grads))
	for i, g := range grads {
		if g == nil {
			continue
		}
		if g.Len() != inputs[i].Len() {
			t.Fatalf("gradient %d has %d elements, input has %d", i, g.Len(), inputs[i].Len())
		}
		analytic[i] = g.Values()
	}
	loss := func() float64 {
		out, err := forward()
		if err != nil {
			t.Fatalf("forward: %v", err)
		}
		s := 0.0
		for i, v := range out.Float64() {
			s += v * dyCopy.Float64()[i]
		}
		return s
	}
	for i, in := range inputs {
		if analytic[i] == nil {
			continue
		}
		name := fmt.Sprintf("input %d", i)
		if i < len(o.Names) {
			name = o.Names[i]
		}
		x := in.Float64()
		worst, worstAt, worstA, worstN := 0.0, -1, 0.0, 0.0
		idx := rng.Perm(len(x))
		if o.Sample > 0 && o.Sample < len(idx) {
			idx = idx[:o.Sample]
		}
		for _, j := range idx {
			orig := x[j]
			x[j] = orig + o.Step
			lp := loss()
			x[j] = orig - o.Step
			lm := loss()
			x[j] = orig
			num := (lp - lm) / (2 * o.Step)
			a := analytic[i][j]
			excess := math.Abs(a-num) - (o.ATol + o.RTol*math.Max(math.Abs(a), math.Abs(num)))
			if math.IsNaN(a) || math.IsNaN(num) {
				excess = math.Inf(1)
			}
			if worstAt < 0 || excess > worst {
				worst, worstAt, worstA, worstN = excess, j, a, num
			}
		}
		if worstAt >= 0 && worst > 0 {
			t.Errorf("%s: gradient mismatch at flat index %d of %v: analytic %.10g, numeric %.10g",
				name, worstAt, in.Shape(), worstA, worstN)
		}
	}
}

// Rand fills a new Float64 tensor with uniform values in [lo, hi).
func Rand(rng *rand.Rand, lo, hi float64, shape ...int) *engine.Tensor {
	t := engine.New(engine.Float64, shape...)
	for i := range t.Float64() {
		t.Float64()[i] = lo + (hi-lo)*rng.Float64()
	}
	return t
}

// Close reports the worst element of got against want under
// |got−want| ≤ atol + rtol·|want|, or "" when all are within.
func Close(got, want []float64, atol, rtol float64) string {
	if len(got) != len(want) {
		return fmt.Sprintf("length %d, want %d", len(got), len(want))
	}
	worst, at := 0.0, -1
	for i := range got {
		ex := math.Abs(got[i]-want[i]) - (atol + rtol*math.Abs(want[i]))
		if math.IsNaN(got[i]) != math.IsNaN(want[i]) {
			ex = math.Inf(1)
		}
		if ex > worst {
			worst, at = ex, i
		}
	}
	if at < 0 {
		return ""
	}
	return fmt.Sprintf("worst element %d: got %.8g, want %.8g (tolerance %.3g + %.3g·|want|)",
		at, got[at], want[at], atol, rtol)
}
