package layers

import (
	"math"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// SetPrecision marks the weight of every convolution, linear layer and
// token mixing, and nothing else; the zoo models' outputs in bf16 stay
// within bf16's error of float32's and differ from them.
func TestSetPrecisionMarksEveryProductWeight(t *testing.T) {
	if !engine.CPUHasBF16() {
		t.Skip("skipped: this CPU has no AVX512_BF16 (or the ISA level in use is below avx512)")
	}
	spec := Spec{Channels: 3, Height: 16, Width: 16, Classes: 10}
	for _, name := range ModelNames() {
		m, err := Build(name, spec)
		if err != nil {
			t.Fatal(err)
		}
		x := engine.New(engine.Float32, 4, 3, 16, 16)
		for i := range x.Float32() {
			x.Float32()[i] = float32(math.Sin(float64(i)))
		}
		m.SetTraining(false)
		want := forwardCopy(t, m, x)
		if err := SetPrecision(m, engine.BF16); err != nil {
			t.Fatal(err)
		}
		products := map[*engine.Tensor]bool{}
		WalkLayers(m, func(_ string, l Layer) {
			if p, ok := l.(productLayer); ok {
				products[p.productWeight().Value] = true
			}
		})
		if len(products) == 0 {
			t.Fatalf("%s: no product layers found", name)
		}
		m.Walk("", func(pname string, p *Param) {
			if got := p.Value.Precision(); got != engine.BF16 && products[p.Value] || got != engine.FP32 && !products[p.Value] {
				t.Errorf("%s: %s is at %v", name, pname, got)
			}
		})
		got := forwardCopy(t, m, x)
		var diff, norm float64
		for i := range got {
			diff += (got[i] - want[i]) * (got[i] - want[i])
			norm += want[i] * want[i]
		}
		if rel := math.Sqrt(diff / norm); rel == 0 || rel > 0.05 {
			t.Errorf("%s: bf16 output differs from float32's by %.3g (relative L2), want (0, 0.05]", name, rel)
		}
	}
}

// A precision the device cannot compute in is refused and changes nothing.
func TestSetPrecisionRefusesAndKeepsFP32(t *testing.T) {
	m, err := Build("cnn", Spec{Channels: 1, Height: 28, Width: 28, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := SetPrecision(m, engine.TF32); err == nil || !strings.Contains(err.Error(), "tf32") {
		t.Fatalf("tf32 on the cpu: %v", err)
	}
	m.Walk("", func(name string, p *Param) {
		if p.Value.Precision() != engine.FP32 {
			t.Errorf("%s is at %v after a refused SetPrecision", name, p.Value.Precision())
		}
	})
}

func forwardCopy(t *testing.T, m Layer, x *engine.Tensor) []float64 {
	t.Helper()
	y, err := m.Forward(x)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, y.Len())
	for i, v := range y.Float32() {
		out[i] = float64(v)
	}
	return out
}
