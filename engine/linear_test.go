package engine_test

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

func TestGradientLinear(t *testing.T) {
	for _, c := range []struct{ n, in, o int }{{1, 1, 1}, {3, 5, 7}, {4, 13, 9}, {2, 33, 17}} {
		rng := rand.New(rand.NewPCG(1, uint64(c.in)))
		x := gradcheck.Rand(rng, -1, 1, c.n, c.in)
		w := gradcheck.Rand(rng, -1, 1, c.o, c.in)
		b := gradcheck.Rand(rng, -1, 1, c.o)
		out := engine.New(engine.Float64, c.n, c.o)
		dx := engine.New(engine.Float64, c.n, c.in)
		dw := engine.New(engine.Float64, c.o, c.in)
		db := engine.New(engine.Float64, c.o)
		gradcheck.Check(t, []*engine.Tensor{x, w, b},
			func() (*engine.Tensor, error) { return out, engine.LinearForward(out, x, w, b) },
			func(dy *engine.Tensor) ([]*engine.Tensor, error) {
				dw.Zero()
				db.Zero()
				return []*engine.Tensor{dx, dw, db}, engine.LinearBackward(dx, dw, db, dy, x, w)
			}, gradcheck.Options{Names: []string{"x", "w", "b"}})
	}
}

// Parameter gradients accumulate: two backward passes give twice the gradient,
// while the input gradient is overwritten.
func TestLinearBackwardAccumulates(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	x := gradcheck.Rand(rng, -1, 1, 3, 4)
	w := gradcheck.Rand(rng, -1, 1, 5, 4)
	dout := gradcheck.Rand(rng, -1, 1, 3, 5)
	dx := engine.New(engine.Float64, 3, 4)
	dw := engine.New(engine.Float64, 5, 4)
	db := engine.New(engine.Float64, 5)
	for i := 0; i < 2; i++ {
		if err := engine.LinearBackward(dx, dw, db, dout, x, w); err != nil {
			t.Fatal(err)
		}
	}
	dx1 := dx.Clone()
	dw1 := engine.New(engine.Float64, 5, 4)
	if err := engine.LinearBackward(dx, dw1, nil, dout, x, w); err != nil {
		t.Fatal(err)
	}
	for i := range dw.Float64() {
		if d := dw.Float64()[i] - 2*dw1.Float64()[i]; d > 1e-12 || d < -1e-12 {
			t.Fatalf("dw[%d] = %v after two passes, want %v", i, dw.Float64()[i], 2*dw1.Float64()[i])
		}
	}
	if msg := gradcheck.Close(dx.Values(), dx1.Values(), 0, 0); msg != "" {
		t.Fatalf("dx must be overwritten, not accumulated: %s", msg)
	}
}

func TestLinearShapeErrors(t *testing.T) {
	x := engine.New(engine.Float32, 2, 3)
	w := engine.New(engine.Float32, 4, 5)
	out := engine.New(engine.Float32, 2, 4)
	err := engine.LinearForward(out, x, w, nil)
	var se *engine.ShapeError
	if !errors.As(err, &se) || se.Op != "LinearForward" {
		t.Fatalf("got %v, want a ShapeError from LinearForward", err)
	}
	t.Log(err)
	if err := engine.LinearForward(out, x, engine.New(engine.Float64, 4, 3), nil); err == nil {
		t.Fatal("mixed dtypes accepted")
	}
}

// LinearReLUForward and LinearReLUBackward: a numerical gradient check in
// float64 (inputs kept away from ReLU's kink by the check's step), the
// bits of Linear then ReLU in float32 (dpre given apart and as dout itself),
// and a clear error without dpre or out.
func TestLinearReLU(t *testing.T) {
	for _, c := range []struct{ n, in, o int }{{1, 1, 1}, {3, 5, 7}, {4, 13, 9}} {
		rng := rand.New(rand.NewPCG(3, uint64(c.in)))
		x := gradcheck.Rand(rng, -1, 1, c.n, c.in)
		w := gradcheck.Rand(rng, -1, 1, c.o, c.in)
		b := gradcheck.Rand(rng, -1, 1, c.o)
		out, dpre := engine.New(engine.Float64, c.n, c.o), engine.New(engine.Float64, c.n, c.o)
		dx, dw, db := engine.New(engine.Float64, c.n, c.in), engine.New(engine.Float64, c.o, c.in), engine.New(engine.Float64, c.o)
		gradcheck.Check(t, []*engine.Tensor{x, w, b},
			func() (*engine.Tensor, error) { return out, engine.LinearReLUForward(out, x, w, b) },
			func(dy *engine.Tensor) ([]*engine.Tensor, error) {
				dw.Zero()
				db.Zero()
				return []*engine.Tensor{dx, dw, db}, engine.LinearReLUBackward(dx, dw, db, dpre, dy, out, x, w)
			}, gradcheck.Options{Names: []string{"x", "w", "b"}})

		x32, w32, b32 := x.As(engine.Float32), w.As(engine.Float32), b.As(engine.Float32)
		dy := gradcheck.Rand(rng, -1, 1, c.n, c.o).As(engine.Float32)
		nw := func(shape ...int) *engine.Tensor { return engine.New(engine.Float32, shape...) }
		fout, fdpre, fdx, fdw, fdb := nw(c.n, c.o), nw(c.n, c.o), nw(c.n, c.in), nw(c.o, c.in), nw(c.o)
		opsMust(t, engine.LinearReLUForward(fout, x32, w32, b32))
		opsMust(t, engine.LinearReLUBackward(fdx, fdw, fdb, fdpre, dy, fout, x32, w32))
		aout, ay, adpre, adx, adw, adb := nw(c.n, c.o), nw(c.n, c.o), nw(c.n, c.o), nw(c.n, c.in), nw(c.o, c.in), nw(c.o)
		opsMust(t, engine.LinearForward(ay, x32, w32, b32))
		opsMust(t, engine.ActivationForward(aout, ay, engine.ReLU))
		opsMust(t, engine.ActivationBackward(adpre, dy, ay, aout, engine.ReLU))
		opsMust(t, engine.LinearBackward(adx, adw, adb, adpre, x32, w32))
		for k, pair := range [][2]*engine.Tensor{{fout, aout}, {fdpre, adpre}, {fdx, adx}, {fdw, adw}, {fdb, adb}} {
			if !bitsEqual(pair[0], pair[1]) {
				t.Errorf("%+v result %d: fused and separate ops differ", c, k)
			}
		}
		inPlace := dy.Clone()
		idx := nw(c.n, c.in)
		opsMust(t, engine.LinearReLUBackward(idx, nw(c.o, c.in), nil, inPlace, inPlace, fout, x32, w32))
		if !bitsEqual(idx, adx) || !bitsEqual(inPlace, adpre) {
			t.Errorf("%+v: dpre as dout itself gives other bits", c)
		}
	}
	x, w := engine.New(engine.Float32, 2, 3), engine.New(engine.Float32, 4, 3)
	out := engine.New(engine.Float32, 2, 4)
	var se *engine.ShapeError
	if err := engine.LinearReLUBackward(nil, nil, nil, nil, out, out, x, w); !errors.As(err, &se) {
		t.Errorf("no dpre: %v", err)
	}
	if err := engine.LinearReLUBackward(nil, nil, nil, out, out, nil, x, w); !errors.As(err, &se) {
		t.Errorf("no out: %v", err)
	}
}

// SetGrads overwrites dw and db with what zeroing them and adding gives,
// whatever they held (NaN here): at every ISA level, in both precisions the
// CPU has, through the one-thread, split and fused-ReLU paths. Zeros may
// differ in sign (a masked row's products are ±0), nothing else.
func TestLinearBackwardSetGradsIsZeroThenAdd(t *testing.T) {
	precs := []engine.Precision{engine.FP32}
	if engine.CPUHasBF16() {
		precs = append(precs, engine.BF16)
	}
	shapes := []struct{ n, in, o int }{{1, 1, 1}, {3, 5, 7}, {64, 400, 120}, {600, 20, 12}, {128, 3072, 256}}
	was := engine.CPUISA()
	defer func() {
		if err := engine.SetCPUISA(was); err != nil {
			t.Error(err)
		}
	}()
	for _, level := range engine.CPUISAs() {
		if err := engine.SetCPUISA(level); err != nil {
			t.Fatal(err)
		}
		for _, prec := range precs {
			if prec == engine.BF16 && level != "avx512" {
				continue // bf16 products run at avx512 only
			}
			for _, c := range shapes {
				for _, relu := range []bool{false, true} {
					for _, dt := range []engine.DType{engine.Float32, engine.Float64} {
						if dt == engine.Float64 && (prec != engine.FP32 || c.n*c.in > 1e4) {
							continue
						}
						name := fmt.Sprintf("%s/%v/%+v/relu=%v/%v", level, prec, c, relu, dt)
						checkSetGrads(t, name, prec, dt, c.n, c.in, c.o, relu)
					}
				}
			}
		}
	}
}

func checkSetGrads(t *testing.T, name string, prec engine.Precision, dt engine.DType, n, in, o int, relu bool) {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(n), uint64(in*o)))
	x := gradcheck.Rand(rng, -1, 1, n, in).As(dt)
	w := gradcheck.Rand(rng, -1, 1, o, in).As(dt)
	dout := gradcheck.Rand(rng, -1, 1, n, o).As(dt)
	outv := gradcheck.Rand(rng, -1, 1, n, o).Values() // ReLU's output: about half its entries positive
	for i, v := range outv {
		outv[i] = max(v, 0)
	}
	out, err := engine.FromFloat64(outv, n, o)
	if err != nil {
		t.Fatal(err)
	}
	out = out.As(dt)
	w.SetPrecision(prec)
	var res [2][3]*engine.Tensor
	for k, mode := range []engine.GradMode{engine.AddGrads, engine.SetGrads} {
		dx, dw, db := engine.New(dt, n, in), engine.New(dt, o, in), engine.New(dt, o)
		if mode == engine.SetGrads {
			dw.Fill(math.NaN())
			db.Fill(math.NaN())
		}
		var dpre, rout *engine.Tensor
		if relu {
			dpre, rout = engine.New(dt, n, o), out
		}
		if err := engine.LinearBackwardMode(mode, dx, dw, db, dpre, dout, rout, x, w); err != nil {
			t.Fatal(name, err)
		}
		res[k] = [3]*engine.Tensor{dx, dw, db}
	}
	for i, what := range []string{"dx", "dw", "db"} {
		a, b := res[0][i].Values(), res[1][i].Values()
		for j := range a {
			if a[j] != b[j] || math.IsNaN(b[j]) {
				t.Fatalf("%s: %s[%d] = %v with SetGrads, %v zeroed then added", name, what, j, b[j], a[j])
			}
		}
	}
}
