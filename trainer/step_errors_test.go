package trainer

import (
	"math"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

// ClipGradNorm returns the global norm and scales the gradients to maxNorm
// only when they exceed it.
func TestClipGradNormScalesToMaxNorm(t *testing.T) {
	a, _ := engine.FromFloat32([]float32{3, 0}, 2)
	b, _ := engine.FromFloat32([]float32{4}, 1)
	params := []*layers.Param{{Grad: a}, {Grad: b}}
	norm, err := ClipGradNorm(params, 10)
	if err != nil || norm != 5 || a.At(0) != 3 {
		t.Fatalf("under the limit: norm %v, g[0] %v, err %v; want 5, 3 (unchanged), nil", norm, a.At(0), err)
	}
	norm, err = ClipGradNorm(params, 1)
	if err != nil || norm != 5 {
		t.Fatalf("over the limit: norm %v, err %v; want 5, nil", norm, err)
	}
	after, err := ClipGradNorm(params, 0)
	if err != nil || math.Abs(after-1) > 1e-5 {
		t.Fatalf("norm after clipping to 1 = %v (%v)", after, err)
	}
}
