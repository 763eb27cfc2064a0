package main

import "testing"

// The probabilities themselves are trainer.Softmax's (trainer/forward_test.go).
func TestTopK(t *testing.T) {
	p := []float64{0.1, 0.3, 0.2, 0.3}
	top := topK(p, 3, []string{"a", "b", "c", "d"})
	if len(top) != 3 || top[0].Class != 1 || top[1].Class != 3 || top[2].Class != 2 || top[0].Name != "b" {
		t.Errorf("top-3 (ties by class index): %+v", top)
	}
	if len(topK([]float64{0.5, 0.5}, 5, nil)) != 2 {
		t.Error("top-5 of 2 classes should give 2")
	}
	if got := className(nil, 7); got != "7" {
		t.Errorf("an unnamed class: %q", got)
	}
}
