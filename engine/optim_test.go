package engine_test

import (
	"math"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

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
