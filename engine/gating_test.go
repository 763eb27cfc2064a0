package engine_test

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

type gatingArgs struct {
	z, gamma, beta, w, b *engine.Tensor
	n, t, d              int
}

func newGatingArgs(seed uint64, n, t, d int) gatingArgs {
	rng := rand.New(rand.NewPCG(29, seed))
	return gatingArgs{
		z:     gradcheck.Rand(rng, -2, 2, n, t, 2*d),
		gamma: gradcheck.Rand(rng, 0.5, 1.5, d),
		beta:  gradcheck.Rand(rng, -1, 1, d),
		w:     gradcheck.Rand(rng, -1, 1, t, t),
		b:     gradcheck.Rand(rng, 0.5, 1.5, t),
		n:     n, t: t, d: d,
	}
}

func (a gatingArgs) as(dt engine.DType) gatingArgs {
	return gatingArgs{a.z.As(dt), a.gamma.As(dt), a.beta.As(dt), a.w.As(dt), a.b.As(dt), a.n, a.t, a.d}
}

func TestGradientSpatialGating(t *testing.T) {
	for i, c := range []struct{ n, t, d int }{{2, 5, 3}, {1, 4, 7}, {3, 1, 2}, {2, 3, 1}} {
		a := newGatingArgs(uint64(i), c.n, c.t, c.d)
		var saved engine.SpatialGatingSaved
		saved.Ensure(engine.Float64, c.n, c.t, c.d)
		out := engine.New(engine.Float64, c.n, c.t, c.d)
		dz := engine.New(engine.Float64, c.n, c.t, 2*c.d)
		dgamma, dbeta := engine.New(engine.Float64, c.d), engine.New(engine.Float64, c.d)
		dw, db := engine.New(engine.Float64, c.t, c.t), engine.New(engine.Float64, c.t)
		gradcheck.Check(t, []*engine.Tensor{a.z, a.gamma, a.beta, a.w, a.b},
			func() (*engine.Tensor, error) {
				return out, engine.SpatialGatingForward(out, &saved, a.z, a.gamma, a.beta, a.w, a.b, 1e-5)
			},
			func(dy *engine.Tensor) ([]*engine.Tensor, error) {
				for _, g := range []*engine.Tensor{dgamma, dbeta, dw, db} {
					g.Zero()
				}
				err := engine.SpatialGatingBackward(dz, dgamma, dbeta, dw, db, dy, a.z, &saved, a.gamma, a.w)
				return []*engine.Tensor{dz, dgamma, dbeta, dw, db}, err
			}, gradcheck.Options{Names: []string{"z", "gamma", "beta", "w", "b"}})
	}
}

// The fused unit equals LayerNorm, a token-mixing product and a multiply
// composed by hand.
func TestSpatialGatingMatchesComposition(t *testing.T) {
	a := newGatingArgs(7, 3, 6, 5)
	n, tk, d := a.n, a.t, a.d
	var saved engine.SpatialGatingSaved
	saved.Ensure(engine.Float64, n, tk, d)
	out := engine.New(engine.Float64, n, tk, d)
	opsMust(t, engine.SpatialGatingForward(out, &saved, a.z, a.gamma, a.beta, a.w, a.b, 1e-5))

	v := engine.New(engine.Float64, n, tk, d)
	for r := 0; r < n*tk; r++ {
		copy(v.Float64()[r*d:r*d+d], a.z.Float64()[r*2*d+d:r*2*d+2*d])
	}
	vn := engine.New(engine.Float64, n, tk, d)
	opsMust(t, engine.LayerNormForward(vn, nil, nil, v, a.gamma, a.beta, 1e-5))
	want := engine.New(engine.Float64, n, tk, d)
	for s := 0; s < n; s++ {
		for i := 0; i < tk; i++ {
			for j := 0; j < d; j++ {
				m := a.b.At(i)
				for k := 0; k < tk; k++ {
					m += a.w.At(i*tk+k) * vn.At((s*tk+k)*d+j)
				}
				want.SetAt((s*tk+i)*d+j, a.z.At((s*tk+i)*2*d+j)*m)
			}
		}
	}
	opsClose(t, "fused vs composed", out, want, 1e-14, 1e-13)
	opsClose(t, "saved norm", saved.Norm, vn, 1e-15, 1e-14)

	// With W = 0 and b = 1, the initialisation the layer uses, out = u.
	a.w.Zero()
	a.b.Fill(1)
	opsMust(t, engine.SpatialGatingForward(out, &saved, a.z, a.gamma, a.beta, a.w, a.b, 1e-5))
	for r := 0; r < n*tk; r++ {
		for j := 0; j < d; j++ {
			if out.At(r*d+j) != a.z.At(r*2*d+j) {
				t.Fatalf("identity gate: out[%d,%d] = %v, want u = %v", r, j, out.At(r*d+j), a.z.At(r*2*d+j))
			}
		}
	}
}

// Float32 agrees with float64 on a size split over the workers; parameter
// gradients accumulate, dz is overwritten and every gradient may be nil.
func TestSpatialGatingFloat32AgreesAndAccumulates(t *testing.T) {
	a := newGatingArgs(8, 9, 16, 40)
	n, tk, d := a.n, a.t, a.d
	rng := rand.New(rand.NewPCG(30, 30))
	dout := gradcheck.Rand(rng, -1, 1, n, tk, d)
	type result struct{ out, dz, dgamma, dbeta, dw, db *engine.Tensor }
	run := func(dt engine.DType, twice bool) result {
		b := a.as(dt)
		var saved engine.SpatialGatingSaved
		saved.Ensure(dt, n, tk, d)
		r := result{engine.New(dt, n, tk, d), engine.New(dt, n, tk, 2*d), engine.New(dt, d), engine.New(dt, d),
			engine.New(dt, tk, tk), engine.New(dt, tk)}
		opsMust(t, engine.SpatialGatingForward(r.out, &saved, b.z, b.gamma, b.beta, b.w, b.b, 1e-5))
		opsMust(t, engine.SpatialGatingBackward(r.dz, r.dgamma, r.dbeta, r.dw, r.db, dout.As(dt), b.z, &saved, b.gamma, b.w))
		if twice {
			r.dz.Fill(3)
			opsMust(t, engine.SpatialGatingBackward(r.dz, r.dgamma, r.dbeta, r.dw, r.db, dout.As(dt), b.z, &saved, b.gamma, b.w))
		}
		return r
	}
	r64, r32 := run(engine.Float64, false), run(engine.Float32, false)
	opsClose(t, "out", r32.out, r64.out, 1e-5, 1e-5)
	opsClose(t, "dz", r32.dz, r64.dz, 1e-5, 1e-4)
	opsClose(t, "dgamma", r32.dgamma, r64.dgamma, 1e-4, 1e-5)
	opsClose(t, "dbeta", r32.dbeta, r64.dbeta, 1e-4, 1e-5)
	opsClose(t, "dw", r32.dw, r64.dw, 1e-4, 1e-5)
	opsClose(t, "db", r32.db, r64.db, 1e-4, 1e-5)

	r2 := run(engine.Float64, true)
	opsClose(t, "dz overwritten", r2.dz, r64.dz, 1e-13, 1e-13)
	for _, p := range [][2]*engine.Tensor{{r2.dgamma, r64.dgamma}, {r2.dbeta, r64.dbeta}, {r2.dw, r64.dw}, {r2.db, r64.db}} {
		engine.Scale(p[1], 2)
		opsClose(t, "accumulated parameter gradient", p[0], p[1], 1e-12, 1e-12)
		engine.Scale(p[1], 0.5)
	}

	// Each gradient alone matches; nil gamma and beta run without affine.
	var saved engine.SpatialGatingSaved
	saved.Ensure(engine.Float64, n, tk, d)
	out := engine.New(engine.Float64, n, tk, d)
	opsMust(t, engine.SpatialGatingForward(out, &saved, a.z, a.gamma, a.beta, a.w, a.b, 1e-5))
	dw := engine.New(engine.Float64, tk, tk)
	opsMust(t, engine.SpatialGatingBackward(nil, nil, nil, dw, nil, dout, a.z, &saved, a.gamma, a.w))
	opsClose(t, "dw alone", dw, r64.dw, 1e-13, 1e-13)
	dgamma := engine.New(engine.Float64, d)
	opsMust(t, engine.SpatialGatingBackward(nil, dgamma, nil, nil, nil, dout, a.z, &saved, a.gamma, a.w))
	opsClose(t, "dgamma alone", dgamma, r64.dgamma, 1e-13, 1e-13)
	opsMust(t, engine.SpatialGatingForward(out, &saved, a.z, nil, nil, a.w, nil, 1e-5))
	opsMust(t, engine.SpatialGatingBackward(r2.dz, nil, nil, nil, nil, dout, a.z, &saved, nil, a.w))
}

func TestSpatialGatingShapeErrors(t *testing.T) {
	const op, opB = "SpatialGatingForward", "SpatialGatingBackward"
	a := newGatingArgs(9, 2, 3, 4).as(engine.Float32)
	var saved engine.SpatialGatingSaved
	saved.Ensure(engine.Float32, 2, 3, 4)
	out := engine.New(engine.Float32, 2, 3, 4)
	opsMust(t, engine.SpatialGatingForward(out, &saved, a.z, a.gamma, a.beta, a.w, a.b, 1e-5))
	opsShapeError(t, engine.SpatialGatingForward(out, &saved, a.z, a.gamma, a.beta, engine.New(engine.Float32, 3, 4), a.b, 1e-5), op)
	t.Log(engine.SpatialGatingForward(out, &saved, a.z, a.gamma, a.beta, engine.New(engine.Float32, 3, 4), a.b, 1e-5))
	opsShapeError(t, engine.SpatialGatingForward(out, &saved, engine.New(engine.Float32, 2, 3, 7), a.gamma, a.beta, a.w, a.b, 1e-5), op)
	opsShapeError(t, engine.SpatialGatingForward(out, &saved, engine.New(engine.Float32, 2, 3, 6), a.gamma, a.beta, a.w, a.b, 1e-5), op)
	opsShapeError(t, engine.SpatialGatingForward(out, &saved, a.z, a.gamma, engine.New(engine.Float32, 3), a.w, a.b, 1e-5), op)
	opsShapeError(t, engine.SpatialGatingForward(out, &saved, a.z, a.gamma, a.beta, a.w, engine.New(engine.Float32, 4), 1e-5), op)
	opsShapeError(t, engine.SpatialGatingForward(out, &engine.SpatialGatingSaved{}, a.z, a.gamma, a.beta, a.w, a.b, 1e-5), op)
	opsShapeError(t, engine.SpatialGatingForward(out, nil, a.z, a.gamma, a.beta, a.w, a.b, 1e-5), op)
	opsShapeError(t, engine.SpatialGatingForward(out, &saved, a.z.As(engine.Float64), a.gamma, a.beta, a.w, a.b, 1e-5), op)
	opsShapeError(t, engine.SpatialGatingBackward(out, nil, nil, nil, nil, out, a.z, &saved, a.gamma, a.w), opB)
	opsShapeError(t, engine.SpatialGatingBackward(nil, nil, nil, a.b, nil, out, a.z, &saved, a.gamma, a.w), opB)
	opsShapeError(t, engine.SpatialGatingBackward(nil, nil, nil, nil, a.gamma, out, a.z, &saved, a.gamma, a.w), opB)
	opsShapeError(t, engine.SpatialGatingBackward(nil, nil, nil, nil, nil, a.z, a.z, &saved, a.gamma, a.w), opB)
}

func TestSpatialGatingNoAllocs(t *testing.T) {
	for _, c := range []struct{ n, t, d int }{{2, 4, 6}, {8, 16, 32}} {
		a := newGatingArgs(10, c.n, c.t, c.d).as(engine.Float32)
		var saved engine.SpatialGatingSaved
		out := engine.New(engine.Float32, c.n, c.t, c.d)
		dz := engine.New(engine.Float32, c.n, c.t, 2*c.d)
		dg, dbeta := engine.New(engine.Float32, c.d), engine.New(engine.Float32, c.d)
		dw, db := engine.New(engine.Float32, c.t, c.t), engine.New(engine.Float32, c.t)
		opsNoAllocs(t, "spatial gating", func() {
			saved.Ensure(engine.Float32, c.n, c.t, c.d)
			_ = engine.SpatialGatingForward(out, &saved, a.z, a.gamma, a.beta, a.w, a.b, 1e-5)
			_ = engine.SpatialGatingBackward(dz, dg, dbeta, dw, db, out, a.z, &saved, a.gamma, a.w)
		})
	}
}
