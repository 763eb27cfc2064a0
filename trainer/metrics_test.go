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
