package bench

import (
	"math"
	"slices"
)

// Sample is one figure measured over repeated runs: its median and spread.
type Sample struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Runs   []float64 `json:"runs"`
}

// NewSample summarises runs (in the order they ran). No runs give NaNs.
func NewSample(runs []float64) Sample {
	if len(runs) == 0 {
		return Sample{Median: math.NaN(), Min: math.NaN(), Max: math.NaN()}
	}
	s := slices.Clone(runs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Sample{Median: med, Min: s[0], Max: s[len(s)-1], Runs: slices.Clone(runs)}
}

// Spread is (max−min)/median, the relative width of the runs.
func (s Sample) Spread() float64 {
	if !(s.Median > 0) {
		return math.NaN()
	}
	return (s.Max - s.Min) / s.Median
}

// Ratio is Kiln's speed over PyTorch's: above 1 Kiln is faster. Low and High
// bound it by the runs' extremes (Kiln's slowest against PyTorch's fastest,
// and the reverse).
type Ratio struct {
	Median float64 `json:"median"`
	Low    float64 `json:"low"`
	High   float64 `json:"high"`
}

// SpeedRatio compares two throughputs (higher is better).
func SpeedRatio(kiln, torch Sample) *Ratio {
	if !(kiln.Median > 0) || !(torch.Median > 0) {
		return nil
	}
	return &Ratio{Median: kiln.Median / torch.Median, Low: kiln.Min / torch.Max, High: kiln.Max / torch.Min}
}

// TimeRatio compares two durations (lower is better), still as Kiln's speed
// over PyTorch's.
func TimeRatio(kiln, torch Sample) *Ratio {
	if !(kiln.Median > 0) || !(torch.Median > 0) {
		return nil
	}
	return &Ratio{Median: torch.Median / kiln.Median, Low: torch.Min / kiln.Max, High: torch.Max / kiln.Min}
}
