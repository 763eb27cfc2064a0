package layers

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// checkLayer converts l to float64 and checks the gradients of its input and
// of every parameter by central finite differences.
func checkLayer(t *testing.T, l Layer, seed uint64, o gradcheck.Options, inShape ...int) {
	t.Helper()
	Convert(l, engine.Float64)
	rng := rand.New(rand.NewPCG(seed, 7))
	x := gradcheck.Rand(rng, -1, 1, inShape...)
	names, params := Params(l)
	inputs := []*engine.Tensor{x}
	o.Names = append([]string{"x"}, names...)
	for _, p := range params {
		inputs = append(inputs, p.Value)
	}
	gradcheck.Check(t, inputs,
		func() (*engine.Tensor, error) { return l.Forward(x) },
		func(dy *engine.Tensor) ([]*engine.Tensor, error) {
			if _, err := l.Forward(x); err != nil {
				return nil, err
			}
			ZeroGrad(l)
			dx, err := l.Backward(dy)
			grads := []*engine.Tensor{dx}
			for _, p := range params {
				grads = append(grads, p.Grad)
			}
			return grads, err
		}, o)
}

func TestGradientLinearLayer(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	checkLayer(t, NewLinear(rng, 7, 5, true), 1, gradcheck.Options{}, 3, 7)
	checkLayer(t, NewLinear(rng, 4, 3, false), 2, gradcheck.Options{}, 1, 4)
}

func TestGradientSequentialResidual(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := NewSequential(NewLinear(rng, 6, 6, true), NewResidual(NewLinear(rng, 6, 6, true)), &Flatten{})
	checkLayer(t, s, 3, gradcheck.Options{}, 2, 6)
	names, _ := Params(s)
	want := []string{"0.weight", "0.bias", "1.weight", "1.bias"}
	if len(names) != len(want) {
		t.Fatalf("names %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("names %v, want %v", names, want)
		}
	}
}
