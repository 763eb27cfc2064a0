package engine_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// The optimisers' reference is their float64 Go loop (optim.go), held here to
// PyTorch's recurrences; the float32 steps are held to it on lengths awkward
// for a vector kernel in optim_ref_test.go, and on sizes either side of the
// parallel threshold below.

// Expected values follow torch.optim.SGD and AdamW step by step on scalars.
func TestSGDStepMatchesPyTorchRecurrence(t *testing.T) {
	for _, nesterov := range []bool{false, true} {
		w, _ := engine.FromFloat64([]float64{1.0}, 1)
		g, _ := engine.FromFloat64([]float64{0.5}, 1)
		buf := engine.New(engine.Float64, 1)
		c := engine.SGDConfig{LR: 0.1, Momentum: 0.9, WeightDecay: 0.01, Nesterov: nesterov}
		ww, b := 1.0, 0.0
		for step := 0; step < 3; step++ {
			if err := engine.SGDStep(w, g, buf, c); err != nil {
				t.Fatal(err)
			}
			d := 0.5 + 0.01*ww
			if step == 0 {
				b = d
			} else {
				b = 0.9*b + d
			}
			if nesterov {
				d += 0.9 * b
			} else {
				d = b
			}
			ww -= 0.1 * d
			if math.Abs(w.At(0)-ww) > 1e-15 {
				t.Fatalf("nesterov=%v step %d: w=%v want %v", nesterov, step, w.At(0), ww)
			}
		}
	}
}

func TestAdamWStepMatchesPyTorchRecurrence(t *testing.T) {
	w, _ := engine.FromFloat64([]float64{1.0, -2}, 2)
	g, _ := engine.FromFloat64([]float64{0.5, 0.25}, 2)
	m := engine.New(engine.Float64, 2)
	v := engine.New(engine.Float64, 2)
	ww, mm, vv := []float64{1, -2}, []float64{0, 0}, []float64{0, 0}
	for step := 1; step <= 3; step++ {
		c := engine.AdamWConfig{LR: 0.01, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.1, Step: step}
		if err := engine.AdamWStep(w, g, m, v, c); err != nil {
			t.Fatal(err)
		}
		for i, gi := range []float64{0.5, 0.25} {
			ww[i] *= 1 - 0.01*0.1
			mm[i] = 0.9*mm[i] + 0.1*gi
			vv[i] = 0.999*vv[i] + 0.001*gi*gi
			mh := mm[i] / (1 - math.Pow(0.9, float64(step)))
			vh := vv[i] / (1 - math.Pow(0.999, float64(step)))
			ww[i] -= 0.01 * mh / (math.Sqrt(vh) + 1e-8)
			if math.Abs(w.At(i)-ww[i]) > 1e-12 {
				t.Fatalf("step %d [%d]: w=%v want %v", step, i, w.At(i), ww[i])
			}
		}
	}
	if err := engine.AdamWStep(w, g, m, nil, engine.AdamWConfig{Step: 1}); err == nil {
		t.Fatal("missing state accepted")
	}
}

// The float32 updates (C, vectorised, split over the workers when large)
// agree with the float64 reference loops, on sizes below and above the
// parallel threshold and with an odd tail.
func TestOptimizerStepsFloat32MatchFloat64(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	fill := func(n int, lo, hi float64) (*engine.Tensor, *engine.Tensor) {
		v := make([]float64, n)
		for i := range v {
			v[i] = lo + (hi-lo)*rng.Float64()
		}
		t64, _ := engine.FromFloat64(v, n)
		return t64.As(engine.Float32), t64
	}
	check := func(name string, got32, want64 *engine.Tensor) {
		t.Helper()
		g, w := got32.Values(), want64.Values()
		for i := range w {
			if math.Abs(g[i]-w[i]) > 1e-5*math.Max(1, math.Abs(w[i])) {
				t.Fatalf("%s: element %d of %d: float32 %v, float64 %v", name, i, len(w), g[i], w[i])
			}
		}
	}
	for _, n := range []int{7, 1000, 1<<15 + 37, 200003} {
		for _, c := range []engine.SGDConfig{
			{LR: 0.1, Momentum: 0, WeightDecay: 0.01},
			{LR: 0.05, Momentum: 0.9, WeightDecay: 5e-4},
			{LR: 0.05, Momentum: 0.9, WeightDecay: 5e-4, Nesterov: true},
		} {
			w32, w64 := fill(n, -1, 1)
			g32, g64 := fill(n, -1, 1)
			var b32, b64 *engine.Tensor
			if c.Momentum != 0 {
				b32, b64 = engine.New(engine.Float32, n), engine.New(engine.Float64, n)
			}
			for range 3 {
				if err := engine.SGDStep(w32, g32, b32, c); err != nil {
					t.Fatal(err)
				}
				if err := engine.SGDStep(w64, g64, b64, c); err != nil {
					t.Fatal(err)
				}
			}
			name := fmt.Sprintf("sgd n=%d %+v", n, c)
			check(name, w32, w64)
			if b32 != nil {
				check(name+" buf", b32, b64)
			}
		}
		w32, w64 := fill(n, -1, 1)
		g32, g64 := fill(n, -1, 1)
		m32, m64 := engine.New(engine.Float32, n), engine.New(engine.Float64, n)
		v32, v64 := engine.New(engine.Float32, n), engine.New(engine.Float64, n)
		for step := 1; step <= 3; step++ {
			c := engine.AdamWConfig{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: step}
			if err := engine.AdamWStep(w32, g32, m32, v32, c); err != nil {
				t.Fatal(err)
			}
			if err := engine.AdamWStep(w64, g64, m64, v64, c); err != nil {
				t.Fatal(err)
			}
		}
		name := fmt.Sprintf("adamw n=%d", n)
		check(name+" w", w32, w64)
		check(name+" m", m32, m64)
		check(name+" v", v32, v64)
	}
}
