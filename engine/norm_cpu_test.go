package engine_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// Float32 LayerNorm (vectorised in C where the CPU allows) agrees with the
// float64 loops for rows shorter than a vector, with a ragged tail and a
// whole number of vectors, with and without gamma and beta.
func TestLayerNormFloat32RowLengths(t *testing.T) {
	for _, d := range []int{3, 8, 16, 17, 20, 64, 128, 131} {
		for _, affine := range []bool{false, true} {
			rng := rand.New(rand.NewPCG(18, uint64(d)))
			rows := 37 // the gradients of γ and β sum in blocks of 16 rows: two and a ragged third
			x := gradcheck.Rand(rng, -2, 3, rows, d)
			dout := gradcheck.Rand(rng, -1, 1, rows, d)
			var gamma, beta *engine.Tensor
			if affine {
				gamma, beta = gradcheck.Rand(rng, 0.5, 1.5, d), gradcheck.Rand(rng, -1, 1, d)
			}
			run := func(dt engine.DType) []*engine.Tensor {
				as := func(v *engine.Tensor) *engine.Tensor {
					if v == nil {
						return nil
					}
					return v.As(dt)
				}
				out, dx := engine.New(dt, rows, d), engine.New(dt, rows, d)
				mean, rstd := engine.New(dt, rows), engine.New(dt, rows)
				res := []*engine.Tensor{out, dx, mean, rstd}
				var dg, db *engine.Tensor
				if affine {
					dg, db = engine.New(dt, d), engine.New(dt, d)
					res = append(res, dg, db)
				}
				opsMust(t, engine.LayerNormForward(out, mean, rstd, as(x), as(gamma), as(beta), 1e-5))
				opsMust(t, engine.LayerNormBackward(dx, dg, db, as(dout), as(x), mean, rstd, as(gamma)))
				return res
			}
			want, got := run(engine.Float64), run(engine.Float32)
			for i := range want {
				opsClose(t, "layer norm", got[i], want[i], 1e-5, 1e-4)
			}
		}
	}
}

// The norm kernels keep the same lanes at AVX2 and AVX-512 (batch norm's
// eight doubles, LayerNorm's sixteen floats: two ymm or one zmm), added in
// the same tree, and the same float operations per element: the two levels
// give the same bits.
func TestNormsAVX512GiveTheAVX2Bits(t *testing.T) {
	if !slices.Contains(engine.CPUISAs(), "avx512") {
		t.Skip("skipped: this CPU has no AVX-512")
	}
	defer restoreISA(t)()
	rng := rand.New(rand.NewPCG(19, 3))
	x, dout := gradcheck.Rand(rng, -2, 3, 6, 4, 9, 11), gradcheck.Rand(rng, -1, 1, 6, 4, 9, 11)
	gamma, beta := gradcheck.Rand(rng, 0.5, 1.5, 4), gradcheck.Rand(rng, -1, 1, 4)
	const rows = 21
	lx, ldout := gradcheck.Rand(rng, -2, 3, rows, 131), gradcheck.Rand(rng, -1, 1, rows, 131)
	lgamma, lbeta := gradcheck.Rand(rng, 0.5, 1.5, 131), gradcheck.Rand(rng, -1, 1, 131)
	var results [2][]*engine.Tensor
	for i, level := range []string{"avx2", "avx512"} {
		if err := engine.SetCPUISA(level); err != nil {
			t.Fatal(err)
		}
		results[i] = runBatchNorm(t, engine.Float32, x, dout, gamma, beta)
		out, dx := engine.New(engine.Float32, rows, 131), engine.New(engine.Float32, rows, 131)
		mean, rstd := engine.New(engine.Float32, rows), engine.New(engine.Float32, rows)
		dg, db := engine.New(engine.Float32, 131), engine.New(engine.Float32, 131)
		f32 := func(v *engine.Tensor) *engine.Tensor { return v.As(engine.Float32) }
		opsMust(t, engine.LayerNormForward(out, mean, rstd, f32(lx), f32(lgamma), f32(lbeta), 1e-5))
		opsMust(t, engine.LayerNormBackward(dx, dg, db, f32(ldout), f32(lx), mean, rstd, f32(lgamma)))
		results[i] = append(results[i], out, dx, mean, rstd, dg, db)
	}
	for k := range results[0] {
		if !slices.Equal(results[0][k].Float32(), results[1][k].Float32()) {
			t.Errorf("result %d: AVX-512 and AVX2 differ", k)
		}
	}
}

// LayerNormBackward may write dx over dout: the gradients of γ and β, which
// read dout, must see it before dx replaces it, in every block of rows.
func TestLayerNormBackwardIntoDout(t *testing.T) {
	const rows, d = 37, 20
	rng := rand.New(rand.NewPCG(20, 1))
	x, dout := gradcheck.Rand(rng, -2, 3, rows, d).As(engine.Float32), gradcheck.Rand(rng, -1, 1, rows, d).As(engine.Float32)
	gamma, beta := gradcheck.Rand(rng, 0.5, 1.5, d).As(engine.Float32), gradcheck.Rand(rng, -1, 1, d).As(engine.Float32)
	out, mean, rstd := engine.New(engine.Float32, rows, d), engine.New(engine.Float32, rows), engine.New(engine.Float32, rows)
	opsMust(t, engine.LayerNormForward(out, mean, rstd, x, gamma, beta, 1e-5))
	grads := func(dx, dy *engine.Tensor) []*engine.Tensor {
		dg, db := engine.New(engine.Float32, d), engine.New(engine.Float32, d)
		opsMust(t, engine.LayerNormBackward(dx, dg, db, dy, x, mean, rstd, gamma))
		return []*engine.Tensor{dx, dg, db}
	}
	want := grads(engine.New(engine.Float32, rows, d), dout)
	inPlace := dout.Clone()
	got := grads(inPlace, inPlace)
	for k := range want {
		if !slices.Equal(got[k].Float32(), want[k].Float32()) {
			t.Errorf("result %d: written over dout, the gradients differ", k)
		}
	}
}
