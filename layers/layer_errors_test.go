package layers

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// ZeroGrad clears every gradient of a CPU model and has nothing to report.
func TestZeroGradClearsAndReturnsNil(t *testing.T) {
	l := NewLinear(rand.New(rand.NewPCG(1, 2)), 3, 2, true)
	if err := l.Weight.Grad.Fill(1); err != nil {
		t.Fatal(err)
	}
	if err := ZeroGrad(l); err != nil {
		t.Fatalf("ZeroGrad on the CPU: %v", err)
	}
	if s, err := engine.SumSquares(l.Weight.Grad); err != nil || s != 0 {
		t.Fatalf("ZeroGrad left Σg² = %v (%v)", s, err)
	}
}

// The dropout stream position round-trips through SetRNGState and moves on
// by the elements a training forward draws.
func TestDropoutRNGStateRoundTrip(t *testing.T) {
	d := NewDropout(0.5, 7)
	d.SetTraining(true)
	if err := d.SetRNGState(engine.DropoutRNG{Seed: 9, Offset: 40}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Forward(engine.New(engine.Float32, 2, 3)); err != nil {
		t.Fatal(err)
	}
	if s := d.RNGState(); s.Seed != 9 || s.Offset != 46 {
		t.Fatalf("RNGState after SetRNGState{9, 40} and 6 draws = %+v, want {9, 46}", s)
	}
}
