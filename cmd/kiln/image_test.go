package main

import (
	"math"
	"testing"
)

func TestSoftmaxTopK(t *testing.T) {
	p := softmax([]float64{1, 3, 2, 3, 1000})
	sum := 0.0
	for _, v := range p {
		sum += v
	}
	if math.Abs(sum-1) > 1e-12 || math.IsNaN(p[4]) {
		t.Errorf("softmax %v sums to %v", p, sum)
	}
	top := topK(softmax([]float64{1, 3, 2, 3}), 3, []string{"a", "b", "c", "d"})
	if len(top) != 3 || top[0].Class != 1 || top[1].Class != 3 || top[2].Class != 2 || top[0].Name != "b" {
		t.Errorf("top-3 (ties by class index): %+v", top)
	}
	if len(topK([]float64{0.5, 0.5}, 5, nil)) != 2 {
		t.Error("top-5 of 2 classes should give 2")
	}
}
