package gradcheck

import (
	"fmt"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// recorder catches the checker's complaints instead of failing the test.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recorder) Helper() {}

// The checker must notice a wrong gradient, or every TestGradient is hollow.
func TestCheckCatchesAWrongGradient(t *testing.T) {
	x, _ := engine.FromFloat64([]float64{0.3, -1.2, 2.0}, 3)
	out := engine.New(engine.Float64, 3)
	forward := func() (*engine.Tensor, error) { // out = x³
		for i, v := range x.Float64() {
			out.Float64()[i] = v * v * v
		}
		return out, nil
	}
	backward := func(factor float64) func(*engine.Tensor) ([]*engine.Tensor, error) {
		return func(dy *engine.Tensor) ([]*engine.Tensor, error) {
			dx := engine.New(engine.Float64, 3)
			for i, v := range x.Float64() {
				dx.Float64()[i] = factor * v * v * dy.Float64()[i]
			}
			return []*engine.Tensor{dx}, nil
		}
	}
	right := &recorder{TB: t}
	Check(right, []*engine.Tensor{x}, forward, backward(3), Options{})
	if len(right.errors) != 0 {
		t.Fatalf("correct gradient rejected: %v", right.errors)
	}
	wrong := &recorder{TB: t}
	Check(wrong, []*engine.Tensor{x}, forward, backward(2.9), Options{})
	if len(wrong.errors) == 0 {
		t.Fatal("a gradient off by 3% passed the check")
	}
	t.Log(wrong.errors)
}
