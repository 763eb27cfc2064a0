package engine_test

import (
	"math"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// The float32 kernels (C, approximate exp and erf) stay within a few float32
// ulps, in absolute terms near zero, of the float64 reference on a dense grid
// and at the special values.
func TestActivationFloat32Accuracy(t *testing.T) {
	var xs []float64
	for v := -30.0; v <= 30; v += 0.00731 {
		xs = append(xs, v)
	}
	xs = append(xs, 0, math.Copysign(0, -1), 1e-30, -1e-30, 88, -88, 100, -100, math.Inf(1), math.Inf(-1))
	x64, _ := engine.FromFloat64(xs, len(xs))
	x32 := x64.As(engine.Float32)
	x64 = x32.As(engine.Float64) // compare on the same (float32-representable) inputs
	dout64 := engine.New(engine.Float64, len(xs))
	dout64.Fill(1)
	dout32 := dout64.As(engine.Float32)
	for _, kind := range []engine.Activation{engine.ReLU, engine.GELU, engine.Sigmoid, engine.Tanh} {
		y64, y32 := engine.New(engine.Float64, len(xs)), engine.New(engine.Float32, len(xs))
		if err := engine.ActivationForward(y64, x64, kind); err != nil {
			t.Fatal(err)
		}
		if err := engine.ActivationForward(y32, x32, kind); err != nil {
			t.Fatal(err)
		}
		if msg := gradcheck.Close(y32.Values(), y64.Values(), 3e-7, 1e-6); msg != "" {
			t.Errorf("%v forward: %s", kind, msg)
		}
		// Near zero, where tanh and GELU take their own series, a few ulps
		// relative: the absolute bound above is larger than a whole term.
		for i, v := range x64.Values() {
			want, got := y64.Values()[i], y32.Values()[i]
			if math.Abs(v) < 0.07 && want != 0 && math.Abs(got-want) > 4e-7*math.Abs(want) {
				t.Errorf("%v(%g) = %g, want %g within 4e-7 relative", kind, v, got, want)
				break
			}
		}
		d64, d32 := engine.New(engine.Float64, len(xs)), engine.New(engine.Float32, len(xs))
		if err := engine.ActivationBackward(d64, dout64, x64, y64, kind); err != nil {
			t.Fatal(err)
		}
		if err := engine.ActivationBackward(d32, dout32, x32, y32, kind); err != nil {
			t.Fatal(err)
		}
		// Sigmoid and tanh differentiate from the float32 output, where 1−y²
		// cancels (PyTorch does the same), hence the absolute 1e-6; at ±Inf
		// the derivative is not a number worth comparing.
		g32, g64 := d32.Values(), d64.Values()
		for i, v := range x64.Values() {
			if math.IsInf(v, 0) {
				g32[i], g64[i] = 0, 0
			}
		}
		if msg := gradcheck.Close(g32, g64, 1e-6, 1e-5); msg != "" {
			t.Errorf("%v backward: %s", kind, msg)
		}
	}
	nan, _ := engine.FromFloat32([]float32{float32(math.NaN())}, 1)
	out := engine.New(engine.Float32, 1)
	for _, kind := range []engine.Activation{engine.ReLU, engine.GELU, engine.Sigmoid, engine.Tanh} {
		if err := engine.ActivationForward(out, nan, kind); err != nil || !math.IsNaN(out.At(0)) {
			t.Errorf("%v(NaN) = %v, want NaN", kind, out.At(0))
		}
	}
}
