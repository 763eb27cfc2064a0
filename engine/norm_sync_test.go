package engine_test

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// syncRank is one data-parallel rank of synchronised batch norm: its shard
// and what it computes. The tensors shaped like x are row views of whole-batch
// tensors, so the ranks' outputs together fill those.
type syncRank struct {
	x, out, dout, dx      *engine.Tensor
	mean, invStd, rm, rv  *engine.Tensor
	dgamma, dbeta         *engine.Tensor
	sums, backSums, share []float64
}

// newSyncRanks splits x, out, dout and dx into shards of split[r] samples.
func newSyncRanks(t *testing.T, split []int, x, out, dout, dx *engine.Tensor) []*syncRank {
	t.Helper()
	c := x.Dim(1)
	var ranks []*syncRank
	start := 0
	for _, n := range split {
		r := &syncRank{sums: make([]float64, 3*c), backSums: make([]float64, 2*c), share: make([]float64, 1)}
		for _, v := range []struct {
			dst  **engine.Tensor
			from *engine.Tensor
		}{{&r.x, x}, {&r.out, out}, {&r.dout, dout}, {&r.dx, dx}} {
			view, err := v.from.Rows(start, n)
			opsMust(t, err)
			*v.dst = view
		}
		pc := func() *engine.Tensor { return engine.New(x.DType(), c) }
		r.mean, r.invStd, r.rm, r.rv, r.dgamma, r.dbeta = pc(), pc(), pc(), pc(), pc(), pc()
		r.rv.Fill(1)
		ranks = append(ranks, r)
		start += n
	}
	return ranks
}

// syncForward steps the ranks through the forward pass in lock-step, adding
// their sums where an all-reduce would; it returns the global count M.
func syncForward(t *testing.T, ranks []*syncRank, gamma, beta *engine.Tensor) float64 {
	t.Helper()
	total := make([]float64, len(ranks[0].sums))
	for _, r := range ranks {
		opsMust(t, engine.BatchNormSums(r.sums, r.x))
		for i, v := range r.sums {
			total[i] += v
		}
	}
	for _, r := range ranks {
		r.share[0] = r.sums[0] / total[0]
		opsMust(t, engine.BatchNormSyncStats(r.mean, r.invStd, r.rm, r.rv, total, 0.1, 1e-5))
		opsMust(t, engine.BatchNormNormalize(r.out, r.x, r.mean, r.invStd, gamma, beta))
	}
	return total[0]
}

// syncBackward is the backward pass in lock-step: each rank's sums weighted
// by its share, added, then each rank's dx.
func syncBackward(t *testing.T, ranks []*syncRank, gamma *engine.Tensor, count float64) {
	t.Helper()
	total := make([]float64, len(ranks[0].backSums))
	for _, r := range ranks {
		opsMust(t, engine.BatchNormBackwardSums(r.backSums, r.dgamma, r.dbeta, r.dout, r.x, r.mean, r.invStd))
		for i, v := range r.backSums {
			total[i] += r.share[0] * v
		}
	}
	for _, r := range ranks {
		opsMust(t, engine.BatchNormSyncBackward(r.dx, r.dout, r.x, r.mean, r.invStd, gamma, total, count, r.share[0]))
	}
}

// With one rank (share 1, the all-reduce the identity) synchronised batch
// norm is BatchNorm2DForward and BatchNorm2DBackward, on sizes that take the
// serial and the parallel path, in both dtypes.
func TestBatchNormSyncOneRankIsBatchNorm(t *testing.T) {
	for _, dt := range []engine.DType{engine.Float32, engine.Float64} {
		for _, shape := range [][]int{{8, 13, 17, 19}, {2, 3, 3, 5}, {6, 4}} {
			c := shape[1]
			rng := rand.New(rand.NewPCG(21, uint64(len(shape))))
			x, dout := gradcheck.Rand(rng, -1, 3, shape...).As(dt), gradcheck.Rand(rng, -1, 1, shape...).As(dt)
			gamma, beta := gradcheck.Rand(rng, 0.5, 1.5, c).As(dt), gradcheck.Rand(rng, -1, 1, c).As(dt)
			out, dx := engine.New(dt, shape...), engine.New(dt, shape...)
			ranks := newSyncRanks(t, []int{shape[0]}, x, out, dout, dx)
			syncBackward(t, ranks, gamma, syncForward(t, ranks, gamma, beta))
			r := ranks[0]

			wantOut, wantDx := engine.New(dt, shape...), engine.New(dt, shape...)
			pc := func() *engine.Tensor { return engine.New(dt, c) }
			mean, invStd, rm, rv, dgamma, dbeta := pc(), pc(), pc(), pc(), pc(), pc()
			rv.Fill(1)
			opsMust(t, engine.BatchNorm2DForward(wantOut, mean, invStd, x, gamma, beta, rm, rv, 0.1, 1e-5))
			opsMust(t, engine.BatchNorm2DBackward(wantDx, dgamma, dbeta, dout, x, mean, invStd, gamma))

			atol, rtol := 1e-6, 1e-6
			if dt == engine.Float64 {
				atol, rtol = 1e-12, 1e-12
			}
			name := dt.String()
			opsClose(t, name+" out", out, wantOut, atol, rtol)
			opsClose(t, name+" mean", r.mean, mean, atol, rtol)
			opsClose(t, name+" invStd", r.invStd, invStd, atol, rtol)
			opsClose(t, name+" running mean", r.rm, rm, atol, rtol)
			opsClose(t, name+" running var", r.rv, rv, atol, rtol)
			opsClose(t, name+" dx", dx, wantDx, atol, rtol)
			opsClose(t, name+" dgamma", r.dgamma, dgamma, atol, rtol)
			opsClose(t, name+" dbeta", r.dbeta, dbeta, atol, rtol)
		}
	}
}

// The gradient of the global batch's loss, assembled as the trainer does:
// each rank's dout is the whole-batch gradient scaled by 1/s_r (the gradient
// of its own shard's mean loss), and every gradient the rank returns is
// multiplied by s_r, the parameters' then added over ranks. One rank, even
// and uneven splits, a rank without samples, three ranks.
func TestGradientBatchNormSync(t *testing.T) {
	for _, shape := range [][]int{{5, 3, 2, 3}, {5, 2}} {
		for _, split := range [][]int{{5}, {3, 2}, {1, 4}, {5, 0}, {0, 2, 3}} {
			rng := rand.New(rand.NewPCG(23, uint64(len(split))))
			c := shape[1]
			x := gradcheck.Rand(rng, -2, 2, shape...)
			gamma, beta := gradcheck.Rand(rng, 0.5, 1.5, c), gradcheck.Rand(rng, -1, 1, c)
			out, dout, dx := engine.New(engine.Float64, shape...), engine.New(engine.Float64, shape...), engine.New(engine.Float64, shape...)
			dgamma, dbeta := engine.New(engine.Float64, c), engine.New(engine.Float64, c)
			ranks := newSyncRanks(t, split, x, out, dout, dx)
			var count float64
			gradcheck.Check(t, []*engine.Tensor{x, gamma, beta},
				func() (*engine.Tensor, error) {
					count = syncForward(t, ranks, gamma, beta)
					return out, nil
				},
				func(dy *engine.Tensor) ([]*engine.Tensor, error) {
					dgamma.Zero()
					dbeta.Zero()
					for _, r := range ranks {
						r.dgamma.Zero()
						r.dbeta.Zero()
					}
					opsMust(t, dout.CopyFrom(dy))
					scaleRanks(ranks, func(r *syncRank) *engine.Tensor { return r.dout }, true)
					syncBackward(t, ranks, gamma, count)
					scaleRanks(ranks, func(r *syncRank) *engine.Tensor { return r.dx }, false)
					for _, r := range ranks {
						opsMust(t, engine.AddScaled(dgamma, r.dgamma, r.share[0]))
						opsMust(t, engine.AddScaled(dbeta, r.dbeta, r.share[0]))
					}
					return []*engine.Tensor{dx, dgamma, dbeta}, nil
				}, gradcheck.Options{Names: []string{"x", "gamma", "beta"}})
		}
	}
}

// scaleRanks multiplies each rank's tensor by its share s, or by 1/s.
func scaleRanks(ranks []*syncRank, which func(*syncRank) *engine.Tensor, inverse bool) {
	for _, r := range ranks {
		s := r.share[0]
		if inverse && s > 0 {
			s = 1 / s
		}
		for i := range which(r).Float64() {
			which(r).Float64()[i] *= s
		}
	}
}

func TestBatchNormSyncErrors(t *testing.T) {
	x := engine.New(engine.Float64, 1, 3, 1, 1)
	c3 := func() *engine.Tensor { return engine.New(engine.Float64, 3) }
	opsShapeError(t, engine.BatchNormSums(make([]float64, 8), x), "BatchNormSums")
	sums := make([]float64, 9)
	opsMust(t, engine.BatchNormSums(sums, x))
	// One value per channel over all ranks has no variance.
	opsShapeError(t, engine.BatchNormSyncStats(c3(), c3(), c3(), c3(), sums, 0.1, 1e-5), "BatchNormSyncStats")
	opsShapeError(t, engine.BatchNormSyncStats(c3(), c3(), c3(), nil, sums, 0.1, 1e-5), "BatchNormSyncStats")
	opsShapeError(t, engine.BatchNormSyncStats(c3(), c3(), nil, nil, sums[:6], 0.1, 1e-5), "BatchNormSyncStats")
	opsShapeError(t, engine.BatchNormBackwardSums(make([]float64, 3), nil, nil, x, x, c3(), c3()), "BatchNormBackwardSums")
	// A shard with samples and no share would divide by zero.
	opsShapeError(t, engine.BatchNormSyncBackward(x, x, x, c3(), c3(), nil, make([]float64, 6), 4, 0),
		"BatchNormSyncBackward")
	opsShapeError(t, engine.BatchNormNormalize(engine.New(engine.Float64, 1, 2), x, c3(), c3(), nil, nil),
		"BatchNormNormalize")
}

func TestBatchNormSyncNoAllocs(t *testing.T) {
	for _, shape := range [][]int{{4, 6, 5, 5}, {8, 16, 17, 17}} {
		c := shape[1]
		x := engine.New(engine.Float32, shape...)
		for i := range x.Float32() {
			x.Float32()[i] = float32(i%7) - 3
		}
		out, dx := engine.New(engine.Float32, shape...), engine.New(engine.Float32, shape...)
		pc := func() *engine.Tensor { return engine.New(engine.Float32, c) }
		gamma, beta, mean, invStd, rm, rv, dg, db := pc(), pc(), pc(), pc(), pc(), pc(), pc(), pc()
		gamma.Fill(1)
		sums, back := make([]float64, 3*c), make([]float64, 2*c)
		opsNoAllocs(t, "synchronised batch norm", func() {
			_ = engine.BatchNormSums(sums, x)
			_ = engine.BatchNormSyncStats(mean, invStd, rm, rv, sums, 0.1, 1e-5)
			_ = engine.BatchNormNormalize(out, x, mean, invStd, gamma, beta)
			_ = engine.BatchNormBackwardSums(back, dg, db, x, x, mean, invStd)
			_ = engine.BatchNormSyncBackward(dx, x, x, mean, invStd, gamma, back, sums[0], 1)
		})
	}
}
