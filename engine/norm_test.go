package engine_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// The norms' reference is their float64 Go loop (norm.go), gradient-checked
// and held to PyTorch's running statistics here; the float32 paths are held to
// it on awkward planes in norm_ref_test.go (batch norm) and on awkward row
// lengths in norm_cpu_test.go (layer norm).
func TestGradientBatchNorm2D(t *testing.T) {
	for _, shape := range [][]int{{2, 3, 3, 5}, {1, 5, 3, 3}, {4, 3}, {3, 2, 7}} {
		for _, affine := range []bool{true, false} {
			rng := rand.New(rand.NewPCG(11, uint64(len(shape))))
			c := shape[1]
			x := gradcheck.Rand(rng, -2, 2, shape...)
			var gamma, beta, dgamma, dbeta *engine.Tensor
			inputs, names := []*engine.Tensor{x}, []string{"x"}
			if affine {
				gamma, beta = gradcheck.Rand(rng, 0.5, 1.5, c), gradcheck.Rand(rng, -1, 1, c)
				dgamma, dbeta = engine.New(engine.Float64, c), engine.New(engine.Float64, c)
				inputs, names = append(inputs, gamma, beta), append(names, "gamma", "beta")
			}
			out, dx := engine.New(engine.Float64, shape...), engine.New(engine.Float64, shape...)
			mean, invStd := engine.New(engine.Float64, c), engine.New(engine.Float64, c)
			runMean, runVar := engine.New(engine.Float64, c), engine.New(engine.Float64, c)
			gradcheck.Check(t, inputs,
				func() (*engine.Tensor, error) {
					return out, engine.BatchNorm2DForward(out, mean, invStd, x, gamma, beta, runMean, runVar, 0.1, 1e-5)
				},
				func(dy *engine.Tensor) ([]*engine.Tensor, error) {
					if !affine {
						return []*engine.Tensor{dx}, engine.BatchNorm2DBackward(dx, nil, nil, dy, x, mean, invStd, nil)
					}
					dgamma.Zero()
					dbeta.Zero()
					err := engine.BatchNorm2DBackward(dx, dgamma, dbeta, dy, x, mean, invStd, gamma)
					return []*engine.Tensor{dx, dgamma, dbeta}, err
				}, gradcheck.Options{Names: names})
		}
	}
}

func TestGradientBatchNorm2DEval(t *testing.T) {
	for _, shape := range [][]int{{2, 3, 3, 5}, {1, 5, 1, 1}, {4, 3}} {
		rng := rand.New(rand.NewPCG(15, uint64(len(shape))))
		c := shape[1]
		x := gradcheck.Rand(rng, -2, 2, shape...)
		gamma, beta := gradcheck.Rand(rng, 0.5, 1.5, c), gradcheck.Rand(rng, -1, 1, c)
		runMean, runVar := gradcheck.Rand(rng, -1, 1, c), gradcheck.Rand(rng, 0.5, 2, c)
		out, dx := engine.New(engine.Float64, shape...), engine.New(engine.Float64, shape...)
		dgamma, dbeta := engine.New(engine.Float64, c), engine.New(engine.Float64, c)
		gradcheck.Check(t, []*engine.Tensor{x, gamma, beta},
			func() (*engine.Tensor, error) {
				return out, engine.BatchNorm2DEvalForward(out, x, gamma, beta, runMean, runVar, 1e-5)
			},
			func(dy *engine.Tensor) ([]*engine.Tensor, error) {
				dgamma.Zero()
				dbeta.Zero()
				err := engine.BatchNorm2DEvalBackward(dx, dgamma, dbeta, dy, x, gamma, runMean, runVar, 1e-5)
				return []*engine.Tensor{dx, dgamma, dbeta}, err
			}, gradcheck.Options{Names: []string{"x", "gamma", "beta"}})
	}
}

// One training step moves the running statistics as PyTorch does (momentum
// 0.1, unbiased variance), the output uses the biased variance, and evaluation
// uses the running statistics.
func TestBatchNormRunningStatsAndEval(t *testing.T) {
	// x: (2,2,1,2); channel 0 holds 1,2,3,6, channel 1 holds -1,-1,-1,3.
	x, _ := engine.FromFloat64([]float64{1, 2, -1, -1, 3, 6, -1, 3}, 2, 2, 1, 2)
	gamma, _ := engine.FromFloat64([]float64{2, 0.5}, 2)
	beta, _ := engine.FromFloat64([]float64{0.25, -1}, 2)
	runMean, _ := engine.FromFloat64([]float64{0.5, -0.5}, 2)
	runVar, _ := engine.FromFloat64([]float64{2, 3}, 2)
	out := engine.New(engine.Float64, 2, 2, 1, 2)
	mean, invStd := engine.New(engine.Float64, 2), engine.New(engine.Float64, 2)
	opsMust(t, engine.BatchNorm2DForward(out, mean, invStd, x, gamma, beta, runMean, runVar, 0.1, 1e-5))
	chans := [][]float64{{1, 2, 3, 6}, {-1, -1, -1, 3}}
	for c, vals := range chans {
		m := (vals[0] + vals[1] + vals[2] + vals[3]) / 4
		ss := 0.0
		for _, v := range vals {
			ss += (v - m) * (v - m)
		}
		rm0, rv0 := []float64{0.5, -0.5}[c], []float64{2, 3}[c]
		if got, want := runMean.At(c), 0.9*rm0+0.1*m; math.Abs(got-want) > 1e-15 {
			t.Errorf("running mean %d = %v, want %v", c, got, want)
		}
		if got, want := runVar.At(c), 0.9*rv0+0.1*ss/3; math.Abs(got-want) > 1e-15 {
			t.Errorf("running var %d = %v, want %v (unbiased)", c, got, want)
		}
		if got, want := invStd.At(c), 1/math.Sqrt(ss/4+1e-5); math.Abs(got-want) > 1e-15 {
			t.Errorf("saved inverse std %d = %v, want %v (biased)", c, got, want)
		}
		if mean.At(c) != m {
			t.Errorf("saved mean %d = %v, want %v", c, mean.At(c), m)
		}
		// out[n=1, c, 0, 1] is vals[3].
		want := (vals[3]-m)/math.Sqrt(ss/4+1e-5)*gamma.At(c) + beta.At(c)
		if got := out.At(4 + 2*c + 1); math.Abs(got-want) > 1e-14 {
			t.Errorf("out for channel %d = %v, want %v", c, got, want)
		}
	}
	opsMust(t, engine.BatchNorm2DEvalForward(out, x, gamma, beta, runMean, runVar, 1e-5))
	for i, v := range x.Float64() {
		c := (i / 2) % 2
		want := (v-runMean.At(c))/math.Sqrt(runVar.At(c)+1e-5)*gamma.At(c) + beta.At(c)
		if math.Abs(out.At(i)-want) > 1e-14 {
			t.Errorf("eval out[%d] = %v, want %v", i, out.At(i), want)
		}
	}
}

// Float32 agrees with float64 on a size that takes the parallel path;
// parameter gradients accumulate and dx may be dout.
func TestBatchNormFloat32AgreesAndAccumulates(t *testing.T) {
	shape := []int{8, 13, 17, 19}
	c := shape[1]
	rng := rand.New(rand.NewPCG(12, 12))
	x := gradcheck.Rand(rng, -1, 3, shape...)
	dout := gradcheck.Rand(rng, -1, 1, shape...)
	gamma, beta := gradcheck.Rand(rng, 0.5, 1.5, c), gradcheck.Rand(rng, -1, 1, c)
	run := func(dt engine.DType) (out, dx, dgamma, dbeta, rm, rv *engine.Tensor) {
		xs, douts, g, b := x.As(dt), dout.As(dt), gamma.As(dt), beta.As(dt)
		out, dx = engine.New(dt, shape...), engine.New(dt, shape...)
		mean, invStd := engine.New(dt, c), engine.New(dt, c)
		rm, rv = engine.New(dt, c), engine.New(dt, c)
		rv.Fill(1)
		dgamma, dbeta = engine.New(dt, c), engine.New(dt, c)
		opsMust(t, engine.BatchNorm2DForward(out, mean, invStd, xs, g, b, rm, rv, 0.1, 1e-5))
		opsMust(t, engine.BatchNorm2DBackward(dx, dgamma, dbeta, douts, xs, mean, invStd, g))
		// Again, in place over dout: dx the same, parameter gradients doubled.
		opsMust(t, engine.BatchNorm2DBackward(douts, dgamma, dbeta, douts, xs, mean, invStd, g))
		opsClose(t, dt.String()+" in-place dx", douts, dx, 0, 0)
		return out, dx, dgamma, dbeta, rm, rv
	}
	out, dx, dg, db, rm, rv := run(engine.Float64)
	out32, dx32, dg32, db32, rm32, rv32 := run(engine.Float32)
	opsClose(t, "out", out32, out, 1e-5, 1e-5)
	opsClose(t, "dx", dx32, dx, 1e-6, 1e-4)
	opsClose(t, "dgamma", dg32, dg, 1e-4, 1e-5)
	opsClose(t, "dbeta", db32, db, 1e-4, 1e-5)
	opsClose(t, "running mean", rm32, rm, 1e-6, 1e-6)
	opsClose(t, "running var", rv32, rv, 1e-6, 1e-6)

	// Evaluation mode, with the running statistics just computed.
	evalRun := func(dt engine.DType) (out, dx, dgamma *engine.Tensor) {
		out, dx, dgamma = engine.New(dt, shape...), engine.New(dt, shape...), engine.New(dt, c)
		g, b := gamma.As(dt), beta.As(dt)
		opsMust(t, engine.BatchNorm2DEvalForward(out, x.As(dt), g, b, rm.As(dt), rv.As(dt), 1e-5))
		opsMust(t, engine.BatchNorm2DEvalBackward(dx, dgamma, nil, dout.As(dt), x.As(dt), g, rm.As(dt), rv.As(dt), 1e-5))
		return out, dx, dgamma
	}
	eo, edx, edg := evalRun(engine.Float64)
	eo32, edx32, edg32 := evalRun(engine.Float32)
	opsClose(t, "eval out", eo32, eo, 1e-5, 1e-5)
	opsClose(t, "eval dx", edx32, edx, 1e-6, 1e-5)
	opsClose(t, "eval dgamma", edg32, edg, 1e-3, 1e-5)

	dg1, db1 := engine.New(engine.Float64, c), engine.New(engine.Float64, c)
	mean, invStd := engine.New(engine.Float64, c), engine.New(engine.Float64, c)
	opsMust(t, engine.BatchNorm2DForward(out, mean, invStd, x, gamma, beta, nil, nil, 0.1, 1e-5))
	opsMust(t, engine.BatchNorm2DBackward(nil, dg1, db1, dout, x, mean, invStd, gamma))
	engine.Scale(dg1, 2)
	engine.Scale(db1, 2)
	opsClose(t, "dgamma accumulates", dg, dg1, 1e-12, 1e-12)
	opsClose(t, "dbeta accumulates", db, db1, 1e-12, 1e-12)
}

func TestBatchNormShapeErrors(t *testing.T) {
	const op = "BatchNorm2DForward"
	x := engine.New(engine.Float32, 2, 3, 4, 4)
	c3, c4 := engine.New(engine.Float32, 3), engine.New(engine.Float32, 4)
	out := engine.New(engine.Float32, 2, 3, 4, 4)
	opsShapeError(t, engine.BatchNorm2DForward(out, c3, c3, x, c4, nil, nil, nil, 0.1, 1e-5), op)
	t.Log(engine.BatchNorm2DForward(out, c3, c3, x, c4, nil, nil, nil, 0.1, 1e-5))
	opsShapeError(t, engine.BatchNorm2DForward(engine.New(engine.Float32, 2, 3, 4, 5), c3, c3, x, nil, nil, nil, nil, 0.1, 1e-5), op)
	opsShapeError(t, engine.BatchNorm2DForward(out, c3, c3, x, nil, nil, c3, nil, 0.1, 1e-5), op)
	opsShapeError(t, engine.BatchNorm2DForward(out, nil, c3, x, nil, nil, nil, nil, 0.1, 1e-5), op)
	opsShapeError(t, engine.BatchNorm2DForward(out, c3, c3, x, nil, nil, nil, nil, 1.5, 1e-5), op)
	one := engine.New(engine.Float32, 1, 3, 1, 1)
	opsShapeError(t, engine.BatchNorm2DForward(one, c3, c3, one, nil, nil, nil, nil, 0.1, 1e-5), op)
	opsShapeError(t, engine.BatchNorm2DForward(out, c3, c3, engine.New(engine.Float32, 6), nil, nil, nil, nil, 0.1, 1e-5), op)
	opsShapeError(t, engine.BatchNorm2DEvalForward(out, x, nil, nil, c3, nil, 1e-5), "BatchNorm2DEvalForward")
	opsShapeError(t, engine.BatchNorm2DEvalForward(out, x, nil, nil, c3, engine.New(engine.Float64, 3), 1e-5), "BatchNorm2DEvalForward")
	opsShapeError(t, engine.BatchNorm2DBackward(out, c4, nil, out, x, c3, c3, c3), "BatchNorm2DBackward")
	opsShapeError(t, engine.BatchNorm2DBackward(out, nil, nil, c3, x, c3, c3, c3), "BatchNorm2DBackward")
	opsShapeError(t, engine.BatchNorm2DBackward(out, nil, nil, out, nil, c3, c3, c3), "BatchNorm2DBackward")
	opsShapeError(t, engine.BatchNorm2DEvalBackward(out, c4, nil, out, x, nil, c3, c3, 1e-5), "BatchNorm2DEvalBackward")
	opsShapeError(t, engine.BatchNorm2DEvalBackward(out, nil, nil, out, x, nil, c3, nil, 1e-5), "BatchNorm2DEvalBackward")
}

func TestGradientLayerNorm(t *testing.T) {
	for _, shape := range [][]int{{1, 1}, {3, 5}, {2, 3, 7}, {9}} {
		for _, affine := range []bool{true, false} {
			rng := rand.New(rand.NewPCG(13, uint64(len(shape))))
			d := shape[len(shape)-1]
			x := gradcheck.Rand(rng, -2, 2, shape...)
			var gamma, beta, dgamma, dbeta *engine.Tensor
			inputs, names := []*engine.Tensor{x}, []string{"x"}
			if affine {
				gamma, beta = gradcheck.Rand(rng, 0.5, 1.5, d), gradcheck.Rand(rng, -1, 1, d)
				dgamma, dbeta = engine.New(engine.Float64, d), engine.New(engine.Float64, d)
				inputs, names = append(inputs, gamma, beta), append(names, "gamma", "beta")
			}
			rows := x.Len() / d
			out, dx := engine.New(engine.Float64, shape...), engine.New(engine.Float64, shape...)
			mean, rstd := engine.New(engine.Float64, rows), engine.New(engine.Float64, rows)
			gradcheck.Check(t, inputs,
				func() (*engine.Tensor, error) {
					return out, engine.LayerNormForward(out, mean, rstd, x, gamma, beta, 1e-5)
				},
				func(dy *engine.Tensor) ([]*engine.Tensor, error) {
					if !affine {
						return []*engine.Tensor{dx}, engine.LayerNormBackward(dx, nil, nil, dy, x, mean, rstd, nil)
					}
					dgamma.Zero()
					dbeta.Zero()
					err := engine.LayerNormBackward(dx, dgamma, dbeta, dy, x, mean, rstd, gamma)
					return []*engine.Tensor{dx, dgamma, dbeta}, err
				}, gradcheck.Options{Names: names})
		}
	}
}

func TestLayerNormValues(t *testing.T) {
	x, _ := engine.FromFloat64([]float64{1, 2, 3, 4}, 1, 4)
	gamma, _ := engine.FromFloat64([]float64{1, 2, 3, 4}, 4)
	beta, _ := engine.FromFloat64([]float64{0, 0, 1, 1}, 4)
	out, mean, rstd := engine.New(engine.Float64, 1, 4), engine.New(engine.Float64, 1), engine.New(engine.Float64, 1)
	opsMust(t, engine.LayerNormForward(out, mean, rstd, x, gamma, beta, 1e-5))
	r := 1 / math.Sqrt(1.25+1e-5)
	want, _ := engine.FromFloat64([]float64{-1.5 * r, -0.5 * 2 * r, 0.5*3*r + 1, 1.5*4*r + 1}, 1, 4)
	opsClose(t, "layer norm", out, want, 1e-15, 1e-15)
	if mean.At(0) != 2.5 || math.Abs(rstd.At(0)-r) > 1e-15 {
		t.Errorf("mean %v rstd %v, want 2.5, %v", mean.At(0), rstd.At(0), r)
	}
	// mean and rstd may be omitted, and out may be x.
	opsMust(t, engine.LayerNormForward(x, nil, nil, x, gamma, beta, 1e-5))
	opsClose(t, "in-place layer norm", x, want, 1e-15, 1e-15)
}

// Float32 agrees with float64 on a size that takes the parallel path, the
// result does not change with dx aliasing dout, and parameter gradients
// accumulate.
func TestLayerNormFloat32AgreesAndAccumulates(t *testing.T) {
	shape := []int{5, 61, 129}
	d, rows := 129, 5*61
	rng := rand.New(rand.NewPCG(14, 14))
	x := gradcheck.Rand(rng, -1, 3, shape...)
	dout := gradcheck.Rand(rng, -1, 1, shape...)
	gamma, beta := gradcheck.Rand(rng, 0.5, 1.5, d), gradcheck.Rand(rng, -1, 1, d)
	run := func(dt engine.DType) (out, dx, dgamma, dbeta *engine.Tensor) {
		xs, douts, g, b := x.As(dt), dout.As(dt), gamma.As(dt), beta.As(dt)
		out, dx = engine.New(dt, shape...), engine.New(dt, shape...)
		mean, rstd := engine.New(dt, 5, 61), engine.New(dt, rows)
		dgamma, dbeta = engine.New(dt, d), engine.New(dt, d)
		opsMust(t, engine.LayerNormForward(out, mean, rstd, xs, g, b, 1e-5))
		opsMust(t, engine.LayerNormBackward(dx, dgamma, dbeta, douts, xs, mean, rstd, g))
		opsMust(t, engine.LayerNormBackward(douts, dgamma, dbeta, douts, xs, mean, rstd, g))
		opsClose(t, dt.String()+" in-place dx", douts, dx, 0, 0)
		return out, dx, dgamma, dbeta
	}
	out, dx, dg, db := run(engine.Float64)
	out32, dx32, dg32, db32 := run(engine.Float32)
	opsClose(t, "out", out32, out, 1e-5, 1e-5)
	opsClose(t, "dx", dx32, dx, 1e-5, 1e-4)
	opsClose(t, "dgamma", dg32, dg, 1e-4, 1e-5)
	opsClose(t, "dbeta", db32, db, 1e-4, 1e-5)

	mean, rstd := engine.New(engine.Float64, rows), engine.New(engine.Float64, rows)
	dg1, db1 := engine.New(engine.Float64, d), engine.New(engine.Float64, d)
	opsMust(t, engine.LayerNormForward(out, mean, rstd, x, gamma, beta, 1e-5))
	opsMust(t, engine.LayerNormBackward(nil, dg1, db1, dout, x, mean, rstd, gamma))
	engine.Scale(dg1, 2)
	engine.Scale(db1, 2)
	opsClose(t, "dgamma accumulates", dg, dg1, 1e-12, 1e-12)
	opsClose(t, "dbeta accumulates", db, db1, 1e-12, 1e-12)
}

func TestLayerNormShapeErrors(t *testing.T) {
	x := engine.New(engine.Float32, 2, 3, 4)
	d4, r6 := engine.New(engine.Float32, 4), engine.New(engine.Float32, 6)
	opsShapeError(t, engine.LayerNormForward(x, r6, r6, x, engine.New(engine.Float32, 3), nil, 1e-5), "LayerNormForward")
	t.Log(engine.LayerNormForward(x, r6, r6, x, engine.New(engine.Float32, 3), nil, 1e-5))
	opsShapeError(t, engine.LayerNormForward(x, d4, r6, x, nil, nil, 1e-5), "LayerNormForward")
	opsShapeError(t, engine.LayerNormForward(engine.New(engine.Float32, 2, 12), nil, nil, x, nil, nil, 1e-5), "LayerNormForward")
	opsShapeError(t, engine.LayerNormForward(x, nil, nil, nil, nil, nil, 1e-5), "LayerNormForward")
	opsShapeError(t, engine.LayerNormForward(x, nil, nil, engine.New(engine.Float64, 2, 3, 4), nil, nil, 1e-5), "LayerNormForward")
	opsShapeError(t, engine.LayerNormBackward(x, d4, d4, x, x, nil, r6, d4), "LayerNormBackward")
	opsShapeError(t, engine.LayerNormBackward(x, r6, d4, x, x, r6, r6, d4), "LayerNormBackward")
	opsShapeError(t, engine.LayerNormBackward(engine.New(engine.Float32, 4, 3, 2), d4, d4, x, x, r6, r6, d4), "LayerNormBackward")
}

func TestNormNoAllocs(t *testing.T) {
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
		opsNoAllocs(t, "batch norm", func() {
			_ = engine.BatchNorm2DForward(out, mean, invStd, x, gamma, beta, rm, rv, 0.1, 1e-5)
			_ = engine.BatchNorm2DBackward(dx, dg, db, x, x, mean, invStd, gamma)
			_ = engine.BatchNorm2DEvalForward(out, x, gamma, beta, rm, rv, 1e-5)
			_ = engine.BatchNorm2DEvalBackward(dx, dg, db, x, x, gamma, rm, rv, 1e-5)
		})
		d := shape[3]
		rows := x.Len() / d
		g, b, dgl, dbl := engine.New(engine.Float32, d), engine.New(engine.Float32, d), engine.New(engine.Float32, d), engine.New(engine.Float32, d)
		lm, lr := engine.New(engine.Float32, rows), engine.New(engine.Float32, rows)
		opsNoAllocs(t, "layer norm", func() {
			_ = engine.LayerNormForward(out, lm, lr, x, g, b, 1e-5)
			_ = engine.LayerNormBackward(dx, dgl, dbl, x, x, lm, lr, g)
		})
	}
}

// BenchmarkBatchNorm2DReLU times the fused batch norm and ReLU on cnn's
// first layer at batch 128 (32 channels of 32×32), both cores.
func BenchmarkBatchNorm2DReLU(b *testing.B) {
	shape := []int{128, 32, 32, 32}
	rng := rand.New(rand.NewPCG(5, 6))
	x, dout, out, dx := engine.New(engine.Float32, shape...), engine.New(engine.Float32, shape...),
		engine.New(engine.Float32, shape...), engine.New(engine.Float32, shape...)
	for i := range x.Float32() {
		x.Float32()[i] = float32(rng.NormFloat64())
		dout.Float32()[i] = float32(rng.NormFloat64())
	}
	perC := func() *engine.Tensor { return engine.New(engine.Float32, shape[1]) }
	g, beta, mean, inv, dg, db := perC(), perC(), perC(), perC(), perC(), perC()
	if err := g.Fill(1); err != nil {
		b.Fatal(err)
	}
	bytes := float64(x.Len() * 4)
	b.Run("forward", func(b *testing.B) {
		for b.Loop() {
			if err := engine.BatchNorm2DReLUForward(out, mean, inv, x, g, beta, nil, nil, 0.1, 1e-5); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s-of-x")
	})
	b.Run("backward", func(b *testing.B) {
		for b.Loop() {
			if err := engine.BatchNorm2DReLUBackward(dx, dg, db, dout, out, x, mean, inv, g); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s-of-x")
	})
}

// BenchmarkLayerNorm times LayerNorm on gMLP's block input at batch 128
// (8192 rows of 128), both cores.
func BenchmarkLayerNorm(b *testing.B) {
	const rows, d = 8192, 128
	rng := rand.New(rand.NewPCG(7, 8))
	x, dout, out, dx := engine.New(engine.Float32, rows, d), engine.New(engine.Float32, rows, d),
		engine.New(engine.Float32, rows, d), engine.New(engine.Float32, rows, d)
	for i := range x.Float32() {
		x.Float32()[i] = float32(rng.NormFloat64())
		dout.Float32()[i] = float32(rng.NormFloat64())
	}
	perD := func() *engine.Tensor { return engine.New(engine.Float32, d) }
	g, beta, dg, db := perD(), perD(), perD(), perD()
	if err := g.Fill(1); err != nil {
		b.Fatal(err)
	}
	mean, rstd := engine.New(engine.Float32, rows), engine.New(engine.Float32, rows)
	b.Run("forward", func(b *testing.B) {
		for b.Loop() {
			if err := engine.LayerNormForward(out, mean, rstd, x, g, beta, 1e-5); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(rows*d*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
	})
	b.Run("backward", func(b *testing.B) {
		for b.Loop() {
			if err := engine.LayerNormBackward(dx, dg, db, dout, x, mean, rstd, g); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(rows*d*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
	})
}
