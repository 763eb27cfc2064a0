package main

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
	"github.com/kiln-ml/kiln/layers"
)

// The custom layer passes the gradient check every Kiln layer passes, for
// its input and its parameter, in float64.
func TestChannelScaleGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	s := NewChannelScale(engine.Float64, 3)
	x := engine.New(engine.Float64, 2, 3, 4, 5)
	for i := 0; i < x.Len(); i++ {
		x.SetAt(i, rng.NormFloat64())
	}
	for c := 0; c < 3; c++ {
		s.Gamma.Value.SetAt(c, rng.NormFloat64())
	}
	gradcheck.Check(t, []*engine.Tensor{x, s.Gamma.Value},
		func() (*engine.Tensor, error) { return s.Forward(x) },
		func(dy *engine.Tensor) ([]*engine.Tensor, error) {
			s.Gamma.Grad.Zero()
			dx, err := s.Backward(dy)
			return []*engine.Tensor{dx, s.Gamma.Grad}, err
		}, gradcheck.Options{Names: []string{"x", "gamma"}})
}

// Its gain is named under the layer's place in the model, as Kiln's own
// parameters are, so weight files and checkpoints carry it.
func TestChannelScaleIsNamedInTheModel(t *testing.T) {
	names, _ := layers.Params(net(NewChannelScale(engine.Float32, 8), 10))
	found := false
	for _, n := range names {
		found = found || n == "scale.gamma"
	}
	if !found {
		t.Fatalf("parameters %v lack scale.gamma", names)
	}
}
