package data

import (
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// A training split whose samples all carry one label leaves a classifier
// nothing to learn (it scores 100% by answering that class): it is refused
// with the class named, whether the data set has one class or only the
// samples left after --classes or --subset do.
func TestCheckClassesRefusesOneClass(t *testing.T) {
	x := engine.New(engine.Float32, 4, 1, 2, 2)
	one, err := NewClassification("set", x, []int32{0, 0, 0, 0}, []string{"setosa"})
	if err != nil {
		t.Fatal(err)
	}
	if err := one.CheckClasses(); err == nil || !strings.Contains(err.Error(), `"setosa"`) {
		t.Errorf("one class: %v, want an error naming \"setosa\"", err)
	}
	left, err := NewClassification("set", x, []int32{2, 2, 2, 2}, []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	// Of a few samples, the splits took the other classes': the advice is
	// that the set is too small, not to keep two classes (it has three).
	if err := left.CheckClasses(); err == nil || !strings.Contains(err.Error(), `"c"`) || !strings.Contains(err.Error(), "of 3") ||
		!strings.Contains(err.Error(), "too few samples are left to split") {
		t.Errorf("one class of three present: %v", err)
	}
	two, err := NewClassification("set", x, []int32{0, 1, 0, 1}, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if err := two.CheckClasses(); err != nil {
		t.Errorf("two classes: %v", err)
	}
	reg, err := NewRegression("set", x, []float32{1, 1, 1, 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.CheckClasses(); err != nil {
		t.Errorf("regression: %v", err)
	}
}
