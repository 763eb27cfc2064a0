package engine_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// The activations' reference is their float64 Go loop (activation.go),
// gradient-checked and held to known values here; the float32 paths are held
// to it on lengths awkward for a vector kernel in activation_ref_test.go.

// Helpers shared by the op-family tests (activation, loss, norm, dropout,
// concat, broadcast, gating).

func opsMust(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// opsShapeError fails unless err is a *ShapeError from op.
func opsShapeError(t testing.TB, err error, op string) {
	t.Helper()
	var se *engine.ShapeError
	if !errors.As(err, &se) || se.Op != op {
		t.Fatalf("got %v, want a ShapeError from %s", err, op)
	}
}

// opsClose fails with the worst element when got and want differ by more
// than atol + rtol·|want|.
func opsClose(t testing.TB, what string, got, want *engine.Tensor, atol, rtol float64) {
	t.Helper()
	if msg := gradcheck.Close(got.Values(), want.Values(), atol, rtol); msg != "" {
		t.Errorf("%s: %s", what, msg)
	}
}

// opsAwayFromZero pushes values within margin of 0 out to ±margin, keeping
// finite differences off kinks.
func opsAwayFromZero(x *engine.Tensor, margin float64) {
	for i, v := range x.Float64() {
		if math.Abs(v) < margin {
			x.Float64()[i] = math.Copysign(margin, v)
		}
	}
}

// opsNoAllocs fails when f allocates in steady state.
func opsNoAllocs(t *testing.T, what string, f func()) {
	t.Helper()
	f()
	if a := testing.AllocsPerRun(20, f); a != 0 {
		t.Errorf("%s allocates %v times per call", what, a)
	}
}

var activationKinds = []engine.Activation{engine.ReLU, engine.GELU, engine.Sigmoid, engine.Tanh}

func gradientActivation(t *testing.T, kind engine.Activation) {
	for _, shape := range [][]int{{1}, {3, 5}, {2, 3, 5, 7}} {
		rng := rand.New(rand.NewPCG(uint64(kind), uint64(len(shape))))
		x := gradcheck.Rand(rng, -3, 3, shape...)
		opsAwayFromZero(x, 1e-2)
		out := engine.New(engine.Float64, shape...)
		dx := engine.New(engine.Float64, shape...)
		gradcheck.Check(t, []*engine.Tensor{x},
			func() (*engine.Tensor, error) { return out, engine.ActivationForward(out, x, kind) },
			func(dy *engine.Tensor) ([]*engine.Tensor, error) {
				return []*engine.Tensor{dx}, engine.ActivationBackward(dx, dy, x, out, kind)
			}, gradcheck.Options{Names: []string{kind.String() + " x"}})
	}
}

func TestGradientReLU(t *testing.T)    { gradientActivation(t, engine.ReLU) }
func TestGradientGELU(t *testing.T)    { gradientActivation(t, engine.GELU) }
func TestGradientSigmoid(t *testing.T) { gradientActivation(t, engine.Sigmoid) }
func TestGradientTanh(t *testing.T)    { gradientActivation(t, engine.Tanh) }

func TestActivationValues(t *testing.T) {
	x, _ := engine.FromFloat64([]float64{-2, -1, 0, 0.5, 1, 3}, 6)
	// GELU(x) = x·Φ(x); Φ from tables: Φ(−2)=0.0227501319, Φ(−1)=0.1586552539,
	// Φ(0.5)=0.6914624613, Φ(1)=0.8413447461, Φ(3)=0.9986501020.
	want := map[engine.Activation][]float64{
		engine.ReLU:    {0, 0, 0, 0.5, 1, 3},
		engine.GELU:    {-2 * 0.0227501319481792, -0.158655253931457, 0, 0.5 * 0.691462461274013, 0.841344746068543, 3 * 0.998650101968370},
		engine.Sigmoid: {0.119202922022118, 0.268941421369995, 0.5, 0.622459331201855, 0.731058578630005, 0.952574126822433},
		engine.Tanh:    {-0.964027580075817, -0.761594155955765, 0, 0.462117157260010, 0.761594155955765, 0.995054753686730},
	}
	for _, kind := range activationKinds {
		out := engine.New(engine.Float64, 6)
		opsMust(t, engine.ActivationForward(out, x, kind))
		w, _ := engine.FromFloat64(want[kind], 6)
		opsClose(t, kind.String(), out, w, 1e-12, 1e-12)
	}
}

// Float32 agrees with float64 on a tensor large enough to take the parallel
// path, and in-place forms (out == x for the output-differentiated kinds,
// dx == dout for all) give the same results.
func TestActivationFloat32AgreesAndInPlace(t *testing.T) {
	const n = 40009
	rng := rand.New(rand.NewPCG(3, 3))
	x := gradcheck.Rand(rng, -5, 5, n)
	dout := gradcheck.Rand(rng, -1, 1, n)
	for _, kind := range activationKinds {
		out, dx := engine.New(engine.Float64, n), engine.New(engine.Float64, n)
		opsMust(t, engine.ActivationForward(out, x, kind))
		opsMust(t, engine.ActivationBackward(dx, dout, x, out, kind))

		x32, dout32 := x.As(engine.Float32), dout.As(engine.Float32)
		out32, dx32 := engine.New(engine.Float32, n), engine.New(engine.Float32, n)
		opsMust(t, engine.ActivationForward(out32, x32, kind))
		opsMust(t, engine.ActivationBackward(dx32, dout32, x32, out32, kind))
		opsClose(t, kind.String()+" float32 forward", out32, out, 1e-6, 1e-6)
		opsClose(t, kind.String()+" float32 backward", dx32, dx, 1e-6, 1e-5)

		// In place: forward over x itself (not for GELU), backward over dout.
		xi, di := x.Clone(), dout.Clone()
		var xArg *engine.Tensor
		if kind.NeedsInput() {
			xArg = xi
			opsMust(t, engine.ActivationForward(out, xi, kind))
			opsMust(t, engine.ActivationBackward(di, di, xArg, nil, kind))
		} else {
			opsMust(t, engine.ActivationForward(xi, xi, kind))
			opsMust(t, engine.ActivationBackward(di, di, nil, xi, kind))
		}
		opsClose(t, kind.String()+" in-place backward", di, dx, 0, 0)
	}
	// ReLU differentiates from x when out is not given.
	dx, dxx := engine.New(engine.Float64, n), engine.New(engine.Float64, n)
	out := engine.New(engine.Float64, n)
	opsMust(t, engine.ActivationForward(out, x, engine.ReLU))
	opsMust(t, engine.ActivationBackward(dx, dout, nil, out, engine.ReLU))
	opsMust(t, engine.ActivationBackward(dxx, dout, x, nil, engine.ReLU))
	opsClose(t, "relu from x", dxx, dx, 0, 0)
}

func TestActivationShapeErrors(t *testing.T) {
	a, b := engine.New(engine.Float32, 2, 3), engine.New(engine.Float32, 3, 2)
	opsShapeError(t, engine.ActivationForward(a, b, engine.ReLU), "ActivationForward")
	opsShapeError(t, engine.ActivationForward(a, nil, engine.ReLU), "ActivationForward")
	opsShapeError(t, engine.ActivationForward(a, a, engine.Activation(0)), "ActivationForward")
	opsShapeError(t, engine.ActivationForward(a, engine.New(engine.Float64, 2, 3), engine.Tanh), "ActivationForward")
	opsShapeError(t, engine.ActivationBackward(a, a, nil, a, engine.GELU), "ActivationBackward")
	opsShapeError(t, engine.ActivationBackward(a, a, a, nil, engine.Sigmoid), "ActivationBackward")
	opsShapeError(t, engine.ActivationBackward(a, a, nil, nil, engine.ReLU), "ActivationBackward")
	opsShapeError(t, engine.ActivationBackward(a, b, nil, a, engine.Tanh), "ActivationBackward")
	t.Log(engine.ActivationBackward(a, b, nil, a, engine.Tanh))
}

func TestParseActivation(t *testing.T) {
	for _, kind := range activationKinds {
		got, err := engine.ParseActivation(" " + kind.String() + " ")
		if err != nil || got != kind {
			t.Errorf("ParseActivation(%q) = %v, %v", kind.String(), got, err)
		}
	}
	if got, err := engine.ParseActivation("GELU"); err != nil || got != engine.GELU {
		t.Errorf("ParseActivation(GELU) = %v, %v", got, err)
	}
	if _, err := engine.ParseActivation("swish"); err == nil {
		t.Error("ParseActivation(swish) accepted")
	}
	if s := engine.Activation(0).String(); s != "Activation(0)" {
		t.Errorf("zero Activation prints %q", s)
	}
}

func TestActivationNoAllocs(t *testing.T) {
	for _, n := range []int{1000, 40000} {
		x := engine.New(engine.Float32, n)
		x.Fill(0.3)
		out, dx := engine.New(engine.Float32, n), engine.New(engine.Float32, n)
		for _, kind := range activationKinds {
			opsNoAllocs(t, kind.String(), func() {
				_ = engine.ActivationForward(out, x, kind)
				_ = engine.ActivationBackward(dx, x, x, out, kind)
			})
		}
	}
}

// BenchmarkActivation times each activation's passes on gMLP b128's
// hidden activations (8192 tokens × 256), both cores.
func BenchmarkActivation(b *testing.B) {
	const n = 8192 * 256
	rng := rand.New(rand.NewPCG(3, 4))
	x, y, dout, dx := engine.New(engine.Float32, n), engine.New(engine.Float32, n), engine.New(engine.Float32, n),
		engine.New(engine.Float32, n)
	for i, v := range x.Float32() {
		x.Float32()[i] = float32(rng.NormFloat64())
		dout.Float32()[i] = v + 0.5
	}
	for _, kind := range []engine.Activation{engine.ReLU, engine.GELU, engine.Sigmoid, engine.Tanh} {
		b.Run(kind.String()+"/forward", func(b *testing.B) {
			for b.Loop() {
				if err := engine.ActivationForward(y, x, kind); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
		})
		b.Run(kind.String()+"/backward", func(b *testing.B) {
			for b.Loop() {
				if err := engine.ActivationBackward(dx, dout, x, y, kind); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gelem/s")
		})
	}
}
