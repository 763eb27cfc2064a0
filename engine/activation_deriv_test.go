package engine_test

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// GELU's forward that keeps its derivative gives ActivationForward's bits,
// and the product backward from it ActivationBackward's, at every ISA level
// the CPU runs and in float64, on lengths short of a vector and long enough
// for the workers, in place over the derivative too. (The portable float32
// loops, on arm64, round the kept derivative once more: within an ulp.)
func TestGELUDerivGivesTheActivationsBits(t *testing.T) {
	defer restoreISA(t)()
	rng := rand.New(rand.NewPCG(8, 9))
	for _, n := range []int{1, 7, 33, 40009} {
		x64, dout64 := gradcheck.Rand(rng, -6, 6, n), gradcheck.Rand(rng, -1, 1, n)
		for _, level := range engine.CPUISAs() {
			opsMust(t, engine.SetCPUISA(level))
			for _, dt := range []engine.DType{engine.Float32, engine.Float64} {
				if dt == engine.Float64 && level != engine.CPUISAs()[0] {
					continue // float64 stays in Go
				}
				x, dout := x64.As(dt), dout64.As(dt)
				want, wantDx := engine.New(dt, n), engine.New(dt, n)
				opsMust(t, engine.ActivationForward(want, x, engine.GELU))
				opsMust(t, engine.ActivationBackward(wantDx, dout, x, nil, engine.GELU))
				out, deriv, dx := engine.New(dt, n), engine.New(dt, n), engine.New(dt, n)
				opsMust(t, engine.GELUForwardDeriv(out, deriv, x))
				opsMust(t, engine.GELUBackwardDeriv(dx, dout, deriv))
				what := level + " " + dt.String()
				rtol := 0.0 // the same bits
				if dt == engine.Float32 && !engine.ActivationsInC() {
					rtol = 2e-7 // the portable loops: the kept derivative's one more rounding
				}
				opsClose(t, what+" forward", out, want, 0, 0)
				opsClose(t, what+" backward", dx, wantDx, 0, rtol)
				opsMust(t, engine.GELUBackwardDeriv(deriv, dout, deriv))
				opsClose(t, what+" backward in place", deriv, wantDx, 0, rtol)
			}
		}
	}
}

func TestGELUDerivShapeErrors(t *testing.T) {
	a, b := engine.New(engine.Float32, 2, 3), engine.New(engine.Float32, 3, 2)
	opsShapeError(t, engine.GELUForwardDeriv(a, a, b), "GELUForwardDeriv")
	opsShapeError(t, engine.GELUForwardDeriv(a, nil, a), "GELUForwardDeriv")
	opsShapeError(t, engine.GELUBackwardDeriv(a, a, engine.New(engine.Float64, 2, 3)), "GELUBackwardDeriv")
}

// GELU's derivative far out is 1 (positive) or 0 (negative), at every ISA
// level: the C loops' φ floored at about 1e-38 and v·φ grew with v (2.46 at
// 3e38), so a diverging run's gradients were wrong before they were NaN.
func TestGELUDerivFarOut(t *testing.T) {
	defer restoreISA(t)()
	xs := []float32{14, 1e6, 1e36, 3e38, -30, -1e6, -1e37, -3e38}
	want := []float32{1, 1, 1, 1, 0, 0, 0, 0}
	for _, level := range engine.CPUISAs() {
		opsMust(t, engine.SetCPUISA(level))
		x, err := engine.FromFloat32(xs, len(xs))
		opsMust(t, err)
		ones, err := engine.FromFloat32([]float32{1, 1, 1, 1, 1, 1, 1, 1}, len(xs))
		opsMust(t, err)
		out, deriv, dx := engine.New(engine.Float32, len(xs)), engine.New(engine.Float32, len(xs)), engine.New(engine.Float32, len(xs))
		opsMust(t, engine.GELUForwardDeriv(out, deriv, x))
		opsMust(t, engine.ActivationBackward(dx, ones, x, nil, engine.GELU))
		for i, w := range want {
			if d, b := deriv.Float32()[i], dx.Float32()[i]; d != w || b != w {
				t.Errorf("%s: GELU'(%g) = %g kept, %g by the backward, want %g", level, xs[i], d, b, w)
			}
		}
	}
}
