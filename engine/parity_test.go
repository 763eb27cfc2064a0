package engine_test

// Parity with PyTorch: each test loads a golden file written by
// scripts/make_golden.py (see testdata/golden/README.md), runs Kiln's float64
// CPU op on the stored inputs and parameters, and compares the output and the
// gradients for the stored upstream gradient dout with PyTorch's, element by
// element, under |kiln − torch| ≤ goldenTol·(1 + |torch|).

import (
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/engine/safetensors"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

const goldenTol = 1e-9

type golden struct {
	name    string
	tensors map[string]*engine.Tensor
	meta    map[string]string
}

func goldenLoad(t *testing.T, name string) *golden {
	t.Helper()
	ts, meta, err := safetensors.ReadFile(filepath.Join("..", "testdata", "golden", name+".safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	return &golden{name: name, tensors: ts, meta: meta}
}

// get returns a stored float64 tensor.
func (g *golden) get(t *testing.T, name string) *engine.Tensor {
	t.Helper()
	x := g.tensors[name]
	if x == nil {
		t.Fatalf("%s: no tensor %q", g.name, name)
	}
	if x.DType() != engine.Float64 {
		t.Fatalf("%s: tensor %q is %v, want float64", g.name, name, x.DType())
	}
	return x
}

func (g *golden) has(name string) bool { return g.tensors[name] != nil }

// float reads a number from the metadata.
func (g *golden) float(t *testing.T, key string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(g.meta[key], 64)
	if err != nil {
		t.Fatalf("%s: metadata %q = %q: %v", g.name, key, g.meta[key], err)
	}
	return v
}

// pair reads an "H,W" metadata value.
func (g *golden) pair(t *testing.T, key string) (int, int) {
	t.Helper()
	parts := strings.Split(g.meta[key], ",")
	if len(parts) != 2 {
		t.Fatalf("%s: metadata %q = %q, want H,W", g.name, key, g.meta[key])
	}
	h, err1 := strconv.Atoi(parts[0])
	w, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		t.Fatalf("%s: metadata %q = %q, want H,W", g.name, key, g.meta[key])
	}
	return h, w
}

// labels converts the stored float64 class indices to int32.
func (g *golden) labels(t *testing.T, name string) []int32 {
	t.Helper()
	vals := g.get(t, name).Float64()
	out := make([]int32, len(vals))
	for i, v := range vals {
		if v != math.Trunc(v) || v < 0 || v > math.MaxInt32 {
			t.Fatalf("%s: %s[%d] = %v is not a class index", g.name, name, i, v)
		}
		out[i] = int32(v)
	}
	return out
}

// check compares Kiln's got with the stored tensor want, by element count
// (PyTorch and Kiln may shape a result differently, e.g. (N,C,1,1) and (N,C)).
func (g *golden) check(t *testing.T, what string, got *engine.Tensor, want string) {
	t.Helper()
	w := g.get(t, want)
	if got.Len() != w.Len() {
		t.Errorf("%s: %s has %d elements %v, torch's %s has %d %v", g.name, what, got.Len(), got.Shape(), want, w.Len(), w.Shape())
		return
	}
	gv, wv := got.Values(), w.Values()
	worst := 0.0
	for i := range gv {
		worst = max(worst, math.Abs(gv[i]-wv[i])/(1+math.Abs(wv[i])))
	}
	if msg := gradcheck.Close(gv, wv, goldenTol, goldenTol); msg != "" {
		t.Errorf("%s: %s differs from torch's %s %v: %s; max |Δ|/(1+|torch|) = %.3g",
			g.name, what, want, w.Shape(), msg, worst)
		return
	}
	t.Logf("%s: %s matches torch's %s, worst |Δ|/(1+|torch|) = %.1e", g.name, what, want, worst)
}

// like returns a new float64 tensor shaped as the stored one, filled with NaN
// for gradients that must be overwritten and zeros for those that accumulate.
func (g *golden) like(t *testing.T, name string, fill float64) *engine.Tensor {
	t.Helper()
	x := engine.New(engine.Float64, g.get(t, name).Shape()...)
	x.Fill(fill)
	return x
}

func TestParityConv2D(t *testing.T) {
	for _, name := range []string{"conv2d_stride2_pad1", "conv2d_dilation2", "conv2d_groups2_nobias", "conv2d_rect", "conv2d_pointwise"} {
		t.Run(name, func(t *testing.T) {
			g := goldenLoad(t, name)
			var p engine.Conv2DParams
			p.StrideH, p.StrideW = g.pair(t, "stride")
			p.PadH, p.PadW = g.pair(t, "padding")
			p.DilationH, p.DilationW = g.pair(t, "dilation")
			p.Groups = int(g.float(t, "groups"))
			x, w := g.get(t, "x"), g.get(t, "weight")
			var b, db *engine.Tensor
			if g.has("bias") {
				b, db = g.get(t, "bias"), g.like(t, "bias", 0)
			}
			shape, err := engine.Conv2DOutputShape(x.Shape(), w.Shape(), p)
			if err != nil {
				t.Fatal(err)
			}
			out := engine.New(engine.Float64, shape...)
			if err := engine.Conv2DForward(out, x, w, b, p); err != nil {
				t.Fatal(err)
			}
			g.check(t, "out", out, "out")
			dx, dw := g.like(t, "x", math.NaN()), g.like(t, "weight", 0)
			if err := engine.Conv2DBackward(dx, dw, db, g.get(t, "dout"), x, w, p); err != nil {
				t.Fatal(err)
			}
			g.check(t, "dx", dx, "dx")
			g.check(t, "dw", dw, "dweight")
			if b != nil {
				g.check(t, "db", db, "dbias")
			}
		})
	}
}

func goldenPoolParams(t *testing.T, g *golden) engine.Pool2DParams {
	t.Helper()
	if g.meta["ceil_mode"] != "false" {
		t.Fatalf("%s: ceil_mode %q, Kiln pools in floor mode", g.name, g.meta["ceil_mode"])
	}
	var p engine.Pool2DParams
	p.KernelH, p.KernelW = g.pair(t, "kernel")
	p.StrideH, p.StrideW = g.pair(t, "stride")
	p.PadH, p.PadW = g.pair(t, "padding")
	return p
}

func TestParityMaxPool2D(t *testing.T) {
	for _, name := range []string{"maxpool2d_k3s2p1", "maxpool2d_k2"} {
		t.Run(name, func(t *testing.T) {
			g := goldenLoad(t, name)
			p := goldenPoolParams(t, g)
			x := g.get(t, "x")
			shape, err := engine.Pool2DOutputShape(x.Shape(), p)
			if err != nil {
				t.Fatal(err)
			}
			out := engine.New(engine.Float64, shape...)
			argmax := make([]int32, out.Len())
			if err := engine.MaxPool2DForward(out, argmax, x, p); err != nil {
				t.Fatal(err)
			}
			g.check(t, "out", out, "out")
			dx := g.like(t, "x", math.NaN())
			if err := engine.MaxPool2DBackward(dx, g.get(t, "dout"), argmax, p); err != nil {
				t.Fatal(err)
			}
			g.check(t, "dx", dx, "dx")
		})
	}
}

func TestParityAvgPool2D(t *testing.T) {
	g := goldenLoad(t, "avgpool2d_k3s2p1")
	if g.meta["count_include_pad"] != "true" {
		t.Fatalf("count_include_pad %q, Kiln counts the padding", g.meta["count_include_pad"])
	}
	p := goldenPoolParams(t, g)
	x := g.get(t, "x")
	shape, err := engine.Pool2DOutputShape(x.Shape(), p)
	if err != nil {
		t.Fatal(err)
	}
	out := engine.New(engine.Float64, shape...)
	if err := engine.AvgPool2DForward(out, x, p); err != nil {
		t.Fatal(err)
	}
	g.check(t, "out", out, "out")
	dx := g.like(t, "x", math.NaN())
	if err := engine.AvgPool2DBackward(dx, g.get(t, "dout"), p); err != nil {
		t.Fatal(err)
	}
	g.check(t, "dx", dx, "dx")
}

func TestParityGlobalAvgPool(t *testing.T) {
	g := goldenLoad(t, "global_avgpool")
	x := g.get(t, "x")
	out := g.like(t, "out", math.NaN()) // (N,C,1,1)
	if err := engine.GlobalAvgPoolForward(out, x); err != nil {
		t.Fatal(err)
	}
	g.check(t, "out", out, "out")
	dx := g.like(t, "x", math.NaN())
	if err := engine.GlobalAvgPoolBackward(dx, g.get(t, "dout")); err != nil {
		t.Fatal(err)
	}
	g.check(t, "dx", dx, "dx")
}

func TestParityBatchNorm2DTrain(t *testing.T) {
	g := goldenLoad(t, "batchnorm2d_train")
	x, gamma, beta := g.get(t, "x"), g.get(t, "weight"), g.get(t, "bias")
	c := x.Dim(1)
	runMean, runVar := g.get(t, "running_mean_in").Clone(), g.get(t, "running_var_in").Clone()
	out := g.like(t, "out", math.NaN())
	saveMean, saveInvStd := engine.New(engine.Float64, c), engine.New(engine.Float64, c)
	if err := engine.BatchNorm2DForward(out, saveMean, saveInvStd, x, gamma, beta, runMean, runVar,
		g.float(t, "momentum"), g.float(t, "eps")); err != nil {
		t.Fatal(err)
	}
	g.check(t, "out", out, "out")
	g.check(t, "runMean", runMean, "running_mean")
	g.check(t, "runVar", runVar, "running_var")
	dx := g.like(t, "x", math.NaN())
	dgamma, dbeta := g.like(t, "weight", 0), g.like(t, "bias", 0)
	if err := engine.BatchNorm2DBackward(dx, dgamma, dbeta, g.get(t, "dout"), x, saveMean, saveInvStd, gamma); err != nil {
		t.Fatal(err)
	}
	g.check(t, "dx", dx, "dx")
	g.check(t, "dgamma", dgamma, "dweight")
	g.check(t, "dbeta", dbeta, "dbias")
}

// Evaluation mode: the engine has a forward pass only (its backward is a
// per-channel affine map that layers compose), so only out is compared.
func TestParityBatchNorm2DEval(t *testing.T) {
	g := goldenLoad(t, "batchnorm2d_eval")
	if g.meta["training"] != "false" {
		t.Fatalf("training %q, want false", g.meta["training"])
	}
	out := g.like(t, "out", math.NaN())
	if err := engine.BatchNorm2DEvalForward(out, g.get(t, "x"), g.get(t, "weight"), g.get(t, "bias"),
		g.get(t, "running_mean"), g.get(t, "running_var"), g.float(t, "eps")); err != nil {
		t.Fatal(err)
	}
	g.check(t, "out", out, "out")
}

func TestParityLayerNorm(t *testing.T) {
	g := goldenLoad(t, "layernorm")
	x, gamma, beta := g.get(t, "x"), g.get(t, "weight"), g.get(t, "bias")
	rows := x.Len() / x.Dim(-1)
	out := g.like(t, "out", math.NaN())
	mean, rstd := engine.New(engine.Float64, rows), engine.New(engine.Float64, rows)
	if err := engine.LayerNormForward(out, mean, rstd, x, gamma, beta, g.float(t, "eps")); err != nil {
		t.Fatal(err)
	}
	g.check(t, "out", out, "out")
	dx := g.like(t, "x", math.NaN())
	dgamma, dbeta := g.like(t, "weight", 0), g.like(t, "bias", 0)
	if err := engine.LayerNormBackward(dx, dgamma, dbeta, g.get(t, "dout"), x, mean, rstd, gamma); err != nil {
		t.Fatal(err)
	}
	g.check(t, "dx", dx, "dx")
	g.check(t, "dgamma", dgamma, "dweight")
	g.check(t, "dbeta", dbeta, "dbias")
}

func TestParitySoftmaxCrossEntropy(t *testing.T) {
	for _, name := range []string{"cross_entropy_smooth0.1", "cross_entropy"} {
		t.Run(name, func(t *testing.T) {
			g := goldenLoad(t, name)
			logits, labels := g.get(t, "logits"), g.labels(t, "labels")
			eps := g.float(t, "label_smoothing")
			probs := g.like(t, "logits", math.NaN())
			loss, _, err := engine.SoftmaxCrossEntropyForward(probs, logits, labels, eps)
			if err != nil {
				t.Fatal(err)
			}
			lossT, _ := engine.FromFloat64([]float64{loss})
			g.check(t, "loss", lossT, "loss")
			dlogits := g.like(t, "logits", math.NaN())
			if err := engine.SoftmaxCrossEntropyBackward(dlogits, probs, labels, eps, 1); err != nil {
				t.Fatal(err)
			}
			g.check(t, "dlogits", dlogits, "dlogits")
		})
	}
}

func TestParitySpatialGating(t *testing.T) {
	g := goldenLoad(t, "sgu")
	z := g.get(t, "z")
	gamma, beta := g.get(t, "norm.weight"), g.get(t, "norm.bias")
	w, b := g.get(t, "proj.weight"), g.get(t, "proj.bias")
	n, tok, d := z.Dim(0), z.Dim(1), z.Dim(2)/2
	var saved engine.SpatialGatingSaved
	saved.Ensure(engine.Float64, n, tok, d)
	out := g.like(t, "out", math.NaN())
	if err := engine.SpatialGatingForward(out, &saved, z, gamma, beta, w, b, g.float(t, "eps")); err != nil {
		t.Fatal(err)
	}
	g.check(t, "out", out, "out")
	dz := g.like(t, "z", math.NaN())
	dgamma, dbeta := g.like(t, "norm.weight", 0), g.like(t, "norm.bias", 0)
	dw, db := g.like(t, "proj.weight", 0), g.like(t, "proj.bias", 0)
	if err := engine.SpatialGatingBackward(dz, dgamma, dbeta, dw, db, g.get(t, "dout"), z, &saved, gamma, w); err != nil {
		t.Fatal(err)
	}
	g.check(t, "dz", dz, "dz")
	g.check(t, "dgamma", dgamma, "grad.norm.weight")
	g.check(t, "dbeta", dbeta, "grad.norm.bias")
	g.check(t, "dw", dw, "grad.proj.weight")
	g.check(t, "db", db, "grad.proj.bias")
}
