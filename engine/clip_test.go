package engine_test

import (
	"math"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// ClipByGlobalNorm on the CPU: tensors whose global norm is above the bound
// come out with norm maxNorm·norm/(norm+1e-6) and their directions kept;
// within the bound, or with a NaN, nothing changes; a bound that is not
// positive is an error.
func TestClipByGlobalNorm(t *testing.T) {
	a := engine.New(engine.Float32, 3)
	b := engine.New(engine.Float32, 2, 2)
	fill := func() {
		copy(a.Float32(), []float32{3, 0, 0})
		copy(b.Float32(), []float32{0, 4, 0, 0})
	}
	fill()
	opsMust(t, engine.ClipByGlobalNorm([]*engine.Tensor{a, nil, b}, 1))
	want := float32(1 / (5 + 1e-6))
	if got := a.Float32()[0]; math.Abs(float64(got-3*want)) > 1e-7 || math.Abs(float64(b.Float32()[1]-4*want)) > 1e-7 {
		t.Errorf("clipped to %v and %v, want %v and %v", got, b.Float32()[1], 3*want, 4*want)
	}
	fill()
	opsMust(t, engine.ClipByGlobalNorm([]*engine.Tensor{a, b}, 5))
	if a.Float32()[0] != 3 || b.Float32()[1] != 4 {
		t.Error("a norm of exactly the bound was scaled")
	}
	fill()
	a.Float32()[1] = float32(math.NaN())
	opsMust(t, engine.ClipByGlobalNorm([]*engine.Tensor{a, b}, 1))
	if a.Float32()[0] != 3 {
		t.Error("a NaN norm scaled the tensors")
	}
	for _, bad := range []float64{0, -1, math.NaN()} {
		if err := engine.ClipByGlobalNorm([]*engine.Tensor{a}, bad); err == nil {
			t.Errorf("max norm %v: no error", bad)
		}
	}
}
