package trainer

import (
	"math"

	"github.com/kiln-ml/kiln/engine"
)

// ClassMetrics accumulates classification results over batches.
type ClassMetrics struct {
	Classes   int
	LossSum   float64 // Σ over examples of the loss
	Count     int
	Correct   int
	Top5      int
	Confusion [][]int // [true][predicted]
}

// NewClassMetrics makes an empty accumulator for k classes.
func NewClassMetrics(k int) *ClassMetrics {
	m := &ClassMetrics{Classes: k, Confusion: make([][]int, k)}
	for i := range m.Confusion {
		m.Confusion[i] = make([]int, k)
	}
	return m
}

// Add records a batch: its mean loss, logits (N,K) and labels. The logits
// may be on the device; a failed download is the error, and nothing is
// recorded.
func (m *ClassMetrics) Add(meanLoss float64, logits *engine.Tensor, labels []int32) error {
	n, k := logits.Dim(0), logits.Dim(1)
	l, err := logits.ValuesErr()
	if err != nil {
		return err
	}
	m.LossSum += meanLoss * float64(n)
	m.Count += n
	for i := 0; i < n; i++ {
		y := int(labels[i])
		best, above := 0, 0
		row := l[i*k : (i+1)*k]
		for j, v := range row {
			if v > row[best] {
				best = j
			}
			if v > row[y] || (v == row[y] && j < y) {
				above++
			}
		}
		if best == y {
			m.Correct++
		}
		if above < 5 {
			m.Top5++
		}
		if y < m.Classes && best < m.Classes {
			m.Confusion[y][best]++
		}
	}
	return nil
}

// Loss is the mean loss.
func (m *ClassMetrics) Loss() float64 { return m.LossSum / float64(max(m.Count, 1)) }

// Accuracy is the fraction of correct top-1 predictions.
func (m *ClassMetrics) Accuracy() float64 { return float64(m.Correct) / float64(max(m.Count, 1)) }

// Top5Accuracy is the fraction whose label is among the five highest logits
// (meaningful when there are more than five classes).
func (m *ClassMetrics) Top5Accuracy() float64 { return float64(m.Top5) / float64(max(m.Count, 1)) }

// RegressionMetrics accumulates regression results in the target's units.
type RegressionMetrics struct {
	Count         int
	SumSq, SumAbs float64 // of errors
	SumY, SumYY   float64 // of targets less Shift, for R²
	LossSum       float64 // Σ of the training loss (scaled units)
	// Shift is subtracted from each target before SumY and SumYY: near
	// the targets' mean (the training targets' shift), their variance is
	// not lost to cancellation (targets of 1e8 ± 1 had an R² of NaN).
	Shift float64
}

// Add records predictions and targets, both already in the target's units.
func (m *RegressionMetrics) Add(meanLoss float64, pred, target []float64) {
	for i, p := range pred {
		e := p - target[i]
		m.SumSq += e * e
		m.SumAbs += math.Abs(e)
		y := target[i] - m.Shift
		m.SumY += y
		m.SumYY += y * y
	}
	m.LossSum += meanLoss * float64(len(pred))
	m.Count += len(pred)
}

// Loss is the mean training loss.
func (m *RegressionMetrics) Loss() float64 { return m.LossSum / float64(max(m.Count, 1)) }

// RMSE is the root mean squared error.
func (m *RegressionMetrics) RMSE() float64 { return math.Sqrt(m.SumSq / float64(max(m.Count, 1))) }

// MAE is the mean absolute error.
func (m *RegressionMetrics) MAE() float64 { return m.SumAbs / float64(max(m.Count, 1)) }

// R2 is the coefficient of determination, 1 − SSE/SST. Targets without
// spread (one sample, or all alike) have none: as scikit-learn's r2_score,
// it is then 1 for exact predictions and 0 otherwise, never NaN or a
// rounding error's −1e15.
func (m *RegressionMetrics) R2() float64 {
	n := float64(max(m.Count, 1))
	sst := m.SumYY - m.SumY*m.SumY/n
	if sst <= 1e-12*m.SumYY || sst <= 0 {
		if m.SumSq == 0 {
			return 1
		}
		return 0
	}
	return 1 - m.SumSq/sst
}
