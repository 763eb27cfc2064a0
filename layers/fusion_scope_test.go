package layers

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

func negatives(t *testing.T, y *engine.Tensor) int {
	t.Helper()
	n := 0
	for _, v := range y.Float32() {
		if v < 0 {
			n++
		}
	}
	return n
}

// A layer Append linked to its neighbour for a fused op runs as itself when
// used alone or in another Sequential, as PyTorch users take children out
// of a model (a feature extractor, the logits before a ReLU).
func TestLinkedLayersRunAsThemselvesOutsideTheirSequential(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lin, relu := NewLinear(rng, 6, 8, true), NewReLU()
	conv, relu2, pool := NewConv2D(rng, 2, 4, 3, ConvOptions{Padding: 1}), NewReLU(), NewMaxPool2D(2, 2, 0)
	bn, relu3 := NewBatchNorm2D(2), NewReLU()
	NewSequential(lin, relu)
	NewSequential(conv, relu2, pool)
	NewSequential(bn, relu3)

	x := gradcheck.Rand(rng, -1, 1, 3, 6).As(engine.Float32)
	y, err := lin.Forward(x)
	if err != nil {
		t.Fatal(err)
	}
	if negatives(t, y) == 0 {
		t.Error("a Linear linked to a ReLU, called alone, rectified its output")
	}
	img := gradcheck.Rand(rng, -1, 1, 2, 2, 6, 6).As(engine.Float32)
	feat, err := NewSequential(conv, relu2).Forward(img)
	if err != nil {
		t.Fatal(err)
	}
	if n := negatives(t, feat); n != 0 {
		t.Errorf("conv and ReLU taken out of conv, ReLU, max pool: %d negative features", n)
	}
	yb, err := bn.Forward(img)
	if err != nil {
		t.Fatal(err)
	}
	if negatives(t, yb) == 0 {
		t.Error("a batch norm linked to a ReLU, called alone, rectified its output")
	}
	// and in their own Sequential they still run fused
	s := NewSequential(lin, relu)
	if _, err := s.Forward(x); err != nil {
		t.Fatal(err)
	}
	if !lin.fused || !relu.fused {
		t.Error("Linear and ReLU in the Sequential that linked them did not run as one op")
	}
}

// One layer instance used in two places is refused: its second forward
// would overwrite the activations the first one's backward needs.
func TestOneLayerInTwoPlacesIsRefused(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	relu := NewReLU()
	s := NewSequential(NewLinear(rng, 4, 4, true), relu, NewLinear(rng, 4, 4, true), NewSequential(relu))
	_, err := s.Forward(gradcheck.Rand(rng, -1, 1, 2, 4).As(engine.Float32))
	if err == nil || !strings.Contains(err.Error(), "the same *layers.Act is at 1 and at 3.0") {
		t.Fatalf("a ReLU in two places: %v", err)
	}
}

// Tied weights (two layers sharing one *Param) are one parameter: listed
// once, so an optimiser steps it once, and counted once.
func TestSharedParamIsOneParameter(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	a, b := NewLinear(rng, 4, 4, false), NewLinear(rng, 4, 4, false)
	b.Weight = a.Weight
	s := NewSequential(a, b)
	names, params := Params(s)
	if len(params) != 1 || names[0] != "0.weight" {
		t.Errorf("Params of two layers sharing a weight: %v", names)
	}
	if n := CountParams(s); n != 16 {
		t.Errorf("CountParams: %d, want 16", n)
	}
}

type noState struct{ stateless }

func (*noState) Forward(x *engine.Tensor) (*engine.Tensor, error)  { return x, nil }
func (*noState) Backward(d *engine.Tensor) (*engine.Tensor, error) { return d, nil }

// Two layers of a type without state may share an address (Go's zero-size
// allocations): they are not one layer in two places.
func TestStatelessLayersOfOneTypeAreDistinct(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	s := NewSequential(&noState{}, NewLinear(rng, 4, 4, true), &noState{})
	if _, err := s.Forward(gradcheck.Rand(rng, -1, 1, 2, 4).As(engine.Float32)); err != nil {
		t.Fatal(err)
	}
}
