package trainer

import (
	"math"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

func TestClassMetrics(t *testing.T) {
	logits, _ := engine.FromFloat32([]float32{
		0.1, 0.9, 0, 0, 0, 0, 0, // label 1: correct
		0.9, 0.1, 0.5, 0.4, 0.3, 0.2, 0.15, // label 6: wrong, 7th of 7
		0.2, 0.1, 0.5, 0.4, 0.3, 0.25, 0.0, // label 1: wrong, 6th highest
		0.3, 0.35, 0.36, 0.4, 0.5, 0.0, 0.0, // label 0: wrong, 5th highest
	}, 4, 7)
	m := NewClassMetrics(7)
	m.Add(2.0, logits, []int32{1, 6, 1, 0})
	if m.Correct != 1 || m.Top5 != 2 || m.Loss() != 2 || m.Confusion[6][0] != 1 || m.Confusion[1][1] != 1 || m.Confusion[0][4] != 1 {
		t.Fatalf("correct %d top5 %d loss %v confusion %v", m.Correct, m.Top5, m.Loss(), m.Confusion)
	}
}

// Tied logits (a dead model's zeros) count as the first class, as
// PyTorch's argmax and Kiln's own loss kernel take them.
func TestClassMetricsTiesGoToTheFirstClass(t *testing.T) {
	logits, _ := engine.FromFloat32([]float32{0, 0, 0, 0, 0.5, 0.5}, 2, 3)
	m := NewClassMetrics(3)
	m.Add(0, logits, []int32{0, 1})
	if m.Correct != 2 || m.Confusion[0][0] != 1 || m.Confusion[1][1] != 1 {
		t.Fatalf("tied logits: %d right, confusion %v; want the first of the tied classes", m.Correct, m.Confusion)
	}
}

func TestRegressionMetrics(t *testing.T) {
	var m RegressionMetrics
	m.Add(0, []float64{1, 2, 3}, []float64{1, 2, 5})
	if math.Abs(m.RMSE()-math.Sqrt(4.0/3)) > 1e-12 || math.Abs(m.MAE()-2.0/3) > 1e-12 {
		t.Fatalf("rmse %v mae %v", m.RMSE(), m.MAE())
	}
	// SST = Σ(y−ȳ)² = (1−8/3)²+(2−8/3)²+(5−8/3)² = 26/3; R² = 1 − 4/(26/3).
	if math.Abs(m.R2()-(1-4/(26.0/3))) > 1e-12 {
		t.Fatalf("r2 %v", m.R2())
	}
}

// Targets without spread give scikit-learn's R² (1 for exact predictions,
// else 0), not NaN, which the run's JSON records could not hold: a
// regression whose validation rows were alike stopped at its first
// validation, and resumed into the same stop. Targets far from zero keep
// their variance by the shift.
func TestRegressionR2WithoutSpreadAndFarFromZero(t *testing.T) {
	for _, c := range []struct {
		pred, target []float64
		want         float64
	}{
		{[]float64{3.5, 3.5}, []float64{3.5, 3.5}, 1},
		{[]float64{3.4, 3.6}, []float64{3.5, 3.5}, 0},
		{[]float64{0.1, 0.1, 0.1}, []float64{0.1, 0.1, 0.1}, 1},
		{[]float64{7}, []float64{6}, 0},
	} {
		var m RegressionMetrics
		m.Add(0, c.pred, c.target)
		if got := m.R2(); got != c.want {
			t.Errorf("predictions %v of %v: R² %v, want %v", c.pred, c.target, got, c.want)
		}
	}
	// 1e8 + {0, 1, 2, 3}, predicted 1e8 + {0, 1, 2, 4}: SST 5, SSE 1.
	m := RegressionMetrics{Shift: 1e8}
	m.Add(0, []float64{1e8, 1e8 + 1, 1e8 + 2, 1e8 + 4}, []float64{1e8, 1e8 + 1, 1e8 + 2, 1e8 + 3})
	m.Add(0, nil, nil)
	if got := m.R2(); math.Abs(got-0.8) > 1e-9 {
		t.Errorf("targets near 1e8: R² %v, want 0.8", got)
	}
}
