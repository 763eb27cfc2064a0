package layers

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// Gradients cleared by ClearGrad (whatever they held: NaN here) come out of
// one or two backward passes, and SettleGrad's zeroing of what no layer
// wrote, as those zeroed by ZeroGrad do, on every model of the zoo; the
// linear layers' ones are cleared (else nothing here is tested).
func TestClearedGradsAreZeroedGrads(t *testing.T) {
	for _, name := range ModelNames() {
		for _, passes := range []int{1, 2} {
			// Two models built alike (the same dropout stream): one zeroed,
			// one cleared.
			rng := rand.New(rand.NewPCG(7, 8))
			x := gradcheck.Rand(rng, -1, 1, 3, 1, 28, 28).As(engine.Float32)
			dy := gradcheck.Rand(rng, -1, 1, 3, 10).As(engine.Float32)
			zeroed, params := buildWithParams(t, name)
			if err := ZeroGrad(zeroed); err != nil {
				t.Fatal(err)
			}
			forwardBackward(t, zeroed, x, dy, passes)
			want := make([][]float64, len(params))
			for i, p := range params {
				want[i] = p.Grad.Values()
			}
			if passes == 2 {
				checkPassesAdd(t, name, x, dy, want)
			}
			m, params := buildWithParams(t, name)
			cleared := 0
			for _, p := range params {
				p.Grad.Fill(math.NaN())
				if p.ClearGrad() {
					cleared++
				} else if err := p.Grad.Zero(); err != nil {
					t.Fatal(err)
				}
			}
			forwardBackward(t, m, x, dy, passes)
			for _, p := range params {
				if p.SettleGrad() {
					t.Errorf("%s: a gradient still cleared after the backward pass reached every layer", name)
				}
			}
			if cleared < 2 {
				t.Fatalf("%s: %d gradients cleared, want the linear layers' (at least the head's weight and bias)", name, cleared)
			}
			for i, p := range params {
				for j, v := range p.Grad.Values() {
					if v != want[i][j] || math.IsNaN(v) {
						t.Fatalf("%s, %d passes: gradient %d [%d] = %v after ClearGrad, %v after ZeroGrad", name, passes, i, j, v, want[i][j])
					}
				}
			}
		}
	}
}

// checkPassesAdd: two passes into zeroed gradients (want) add what each
// gives into zeroed gradients alone, as every layer's backward does.
func checkPassesAdd(t *testing.T, name string, x, dy *engine.Tensor, want [][]float64) {
	t.Helper()
	m, params := buildWithParams(t, name)
	sum := make([][]float64, len(params))
	for range 2 {
		if err := ZeroGrad(m); err != nil {
			t.Fatal(err)
		}
		forwardBackward(t, m, x, dy, 1)
		for i, p := range params {
			g := p.Grad.Values()
			if sum[i] == nil {
				sum[i] = g
				continue
			}
			for j := range g {
				sum[i][j] += g[j]
			}
		}
	}
	for i := range params {
		if msg := gradcheck.Close(want[i], sum[i], 1e-6, 1e-5); msg != "" {
			t.Fatalf("%s: gradient %d after two passes is not the two passes' sum: %s", name, i, msg)
		}
	}
}

func buildWithParams(t *testing.T, name string) (*Model, []*Param) {
	t.Helper()
	m, err := Build(name, Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	m.SetTraining(true)
	var params []*Param
	m.Walk("", func(_ string, p *Param) {
		if p.Grad != nil {
			params = append(params, p)
		}
	})
	return m, params
}

func forwardBackward(t *testing.T, m *Model, x, dy *engine.Tensor, passes int) {
	t.Helper()
	for range passes {
		if _, err := m.Forward(x); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Backward(dy); err != nil {
			t.Fatal(err)
		}
	}
}

// A cleared gradient no backward pass wrote is reported by SettleGrad, once;
// ZeroGrad ends the clearing too; a layer that cannot overwrite is never
// cleared.
func TestSettleGradReportsUnwrittenGradients(t *testing.T) {
	l := NewLinear(rand.New(rand.NewPCG(1, 1)), 3, 2, true)
	if !l.Weight.ClearGrad() || !l.Bias.ClearGrad() {
		t.Fatal("a linear layer's gradients are not cleared")
	}
	if !l.Weight.SettleGrad() || l.Weight.SettleGrad() {
		t.Fatal("SettleGrad must report an unwritten cleared gradient once")
	}
	if err := ZeroGrad(l); err != nil {
		t.Fatal(err)
	}
	if l.Bias.SettleGrad() {
		t.Fatal("ZeroGrad left the bias gradient cleared")
	}
	if p := newParam(engine.Float32, false, 2); p.ClearGrad() {
		t.Fatal("a parameter whose layer adds to its gradient was cleared")
	}
}
