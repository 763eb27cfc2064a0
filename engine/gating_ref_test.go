package engine_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// The fused Spatial Gating Unit against SpatialGatingReference, forward and
// every gradient: float64 (the Go loops and gemm), float32 (the C row
// kernels for the layer norm and the gate where the machine has them, the Go
// loops otherwise; run with CGO_ENABLED=0 too). Shapes: one token of one
// channel, channel counts that are not a multiple of the 8-lane vectors, and
// one batch large enough to be split over the workers (N·T²·D ≥ 2¹⁶), with
// and without gamma, beta and b. Tolerances: 1e-10 in float64; in float32,
// 1e-4 absolute + relative, sums of T products of O(1) values and a layer
// norm, each rounded to float32.
func TestSpatialGatingMatchesReference(t *testing.T) {
	for i, c := range []struct {
		n, t, d int
		affine  bool
	}{{1, 1, 1, true}, {2, 3, 5, true}, {3, 7, 9, false}, {2, 5, 17, true}, {8, 16, 33, true}} {
		t.Run(fmt.Sprintf("%dx%dx%d/affine=%v", c.n, c.t, c.d, c.affine), func(t *testing.T) {
			a := newGatingArgs(uint64(100+i), c.n, c.t, c.d)
			if !c.affine {
				a.gamma, a.beta, a.b = nil, nil, nil
			}
			dout := gradcheck.Rand(rand.New(rand.NewPCG(43, uint64(i))), -1, 1, c.n, c.t, c.d)
			want := make([][]float64, 6)
			var err error
			want[0], want[1], want[2], want[3], want[4], want[5], err =
				engine.SpatialGatingReference(a.z, a.gamma, a.beta, a.w, a.b, dout, 1e-5)
			opsMust(t, err)
			for _, dt := range []engine.DType{engine.Float64, engine.Float32} {
				tol := 1e-10
				if dt == engine.Float32 {
					tol = 1e-4
				}
				got := runGating(t, a, dout, dt)
				for k, name := range []string{"out", "dz", "dgamma", "dbeta", "dw", "db"} {
					if want[k] == nil || got[k] == nil {
						continue
					}
					if msg := gradcheck.Close(got[k].Values(), want[k], tol, tol); msg != "" {
						t.Errorf("%v %s: %s", dt, name, msg)
					}
				}
			}
		})
	}
}

// runGating runs the unit forward and backward in dt and returns out, dz,
// dgamma, dbeta, dw, db (nil where a has no gamma, beta or b).
func runGating(t *testing.T, a gatingArgs, dout *engine.Tensor, dt engine.DType) []*engine.Tensor {
	as := func(x *engine.Tensor) *engine.Tensor {
		if x == nil {
			return nil
		}
		return x.As(dt)
	}
	like := func(x *engine.Tensor) *engine.Tensor {
		if x == nil {
			return nil
		}
		return engine.New(dt, x.Shape()...)
	}
	var saved engine.SpatialGatingSaved
	saved.Ensure(dt, a.n, a.t, a.d)
	out, dz := engine.New(dt, a.n, a.t, a.d), engine.New(dt, a.z.Shape()...)
	dgamma, dbeta, dw, db := like(a.gamma), like(a.beta), like(a.w), like(a.b)
	opsMust(t, engine.SpatialGatingForward(out, &saved, as(a.z), as(a.gamma), as(a.beta), as(a.w), as(a.b), 1e-5))
	opsMust(t, engine.SpatialGatingBackward(dz, dgamma, dbeta, dw, db, as(dout), as(a.z), &saved, as(a.gamma), as(a.w)))
	return []*engine.Tensor{out, dz, dgamma, dbeta, dw, db}
}

// The unit's float32 path (the GEMM tiles, the layer norm and the gate) gives
// the same bits at AVX2 and AVX-512.
func TestSpatialGatingAVX512GivesTheAVX2Bits(t *testing.T) {
	if !slices.Contains(engine.CPUISAs(), "avx512") {
		t.Skip("skipped: this CPU has no AVX-512")
	}
	defer restoreISA(t)()
	a := newGatingArgs(7, 4, 64, 40)
	dout := gradcheck.Rand(rand.New(rand.NewPCG(44, 1)), -1, 1, 4, 64, 40)
	var results [2][]*engine.Tensor
	for i, level := range []string{"avx2", "avx512"} {
		if err := engine.SetCPUISA(level); err != nil {
			t.Fatal(err)
		}
		results[i] = runGating(t, a, dout, engine.Float32)
	}
	for k, name := range []string{"out", "dz", "dgamma", "dbeta", "dw", "db"} {
		if !slices.Equal(results[0][k].Float32(), results[1][k].Float32()) {
			t.Errorf("%s: AVX-512 and AVX2 differ", name)
		}
	}
}
