package layers

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// checkLayer converts l to float64 and checks the gradients of its input and
// of every parameter by central finite differences.
func checkLayer(t *testing.T, l Layer, seed uint64, o gradcheck.Options, inShape ...int) {
	t.Helper()
	Convert(l, engine.Float64)
	rng := rand.New(rand.NewPCG(seed, 7))
	x := gradcheck.Rand(rng, -1, 1, inShape...)
	names, params := Params(l)
	inputs := []*engine.Tensor{x}
	o.Names = append([]string{"x"}, names...)
	for _, p := range params {
		inputs = append(inputs, p.Value)
	}
	gradcheck.Check(t, inputs,
		func() (*engine.Tensor, error) { return l.Forward(x) },
		func(dy *engine.Tensor) ([]*engine.Tensor, error) {
			if _, err := l.Forward(x); err != nil {
				return nil, err
			}
			ZeroGrad(l)
			dx, err := l.Backward(dy)
			grads := []*engine.Tensor{dx}
			for _, p := range params {
				grads = append(grads, p.Grad)
			}
			return grads, err
		}, o)
}

func TestGradientLinearLayer(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	checkLayer(t, NewLinear(rng, 7, 5, true), 1, gradcheck.Options{}, 3, 7)
	checkLayer(t, NewLinear(rng, 4, 3, false), 2, gradcheck.Options{}, 1, 4)
}

func TestGradientSequentialResidual(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	s := NewSequential(NewLinear(rng, 6, 6, true), NewResidual(NewLinear(rng, 6, 6, true)), &Flatten{})
	checkLayer(t, s, 3, gradcheck.Options{}, 2, 6)
	names, _ := Params(s)
	want := []string{"0.weight", "0.bias", "1.weight", "1.bias"}
	if len(names) != len(want) {
		t.Fatalf("names %v, want %v", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("names %v, want %v", names, want)
		}
	}
}

func TestGradientConv2DLayer(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 3))
	checkLayer(t, NewConv2D(rng, 3, 5, 3, ConvOptions{Stride: 2, Padding: 1}), 4, gradcheck.Options{}, 2, 3, 7, 5)
	checkLayer(t, NewConv2D(rng, 4, 6, 3, ConvOptions{Groups: 2, NoBias: true, Dilation: 2}), 5, gradcheck.Options{}, 1, 4, 7, 7)
}

// Max pooling is checked on distinct, well-spaced inputs so that no window
// has a tie that a finite-difference step could flip.
func TestGradientPoolingLayers(t *testing.T) {
	checkLayer(t, NewAvgPool2D(3, 2, 1), 6, gradcheck.Options{}, 2, 3, 7, 6)
	checkLayer(t, &GlobalAvgPool{}, 7, gradcheck.Options{}, 2, 3, 5, 3)
	mp := NewMaxPool2D(2, 0, 0)
	x := engine.New(engine.Float64, 2, 3, 6, 5)
	rng := rand.New(rand.NewPCG(9, 9))
	for i, j := range rng.Perm(x.Len()) {
		x.Float64()[i] = float64(j) * 0.01
	}
	gradcheck.Check(t, []*engine.Tensor{x},
		func() (*engine.Tensor, error) { return mp.Forward(x) },
		func(dy *engine.Tensor) ([]*engine.Tensor, error) {
			dx, err := mp.Backward(dy)
			return []*engine.Tensor{dx}, err
		}, gradcheck.Options{})
}

func TestGradientActivationLayers(t *testing.T) {
	for _, a := range []*Act{NewGELU(), NewSigmoid(), NewTanh()} {
		checkLayer(t, a, 8, gradcheck.Options{}, 3, 5)
	}
}

func TestGradientNormLayers(t *testing.T) {
	bn := NewBatchNorm2D(3)
	rng := rand.New(rand.NewPCG(3, 3))
	uniform(bn.Weight.Value, rng, 1)
	uniform(bn.Bias.Value, rng, 1)
	checkLayer(t, bn, 9, gradcheck.Options{ATol: 1e-5, RTol: 1e-4}, 2, 3, 3, 5)
	// In evaluation mode (frozen statistics), as PyTorch's eval() allows.
	frozen := NewBatchNorm2D(3)
	uniform(frozen.Weight.Value, rng, 1)
	uniform(frozen.RunningMean.Value, rng, 0.5)
	uniform(frozen.RunningVar.Value, rng, 0.5)
	for i, v := range frozen.RunningVar.Value.Float32() {
		frozen.RunningVar.Value.Float32()[i] = v + 1
	}
	frozen.SetTraining(false)
	checkLayer(t, frozen, 13, gradcheck.Options{ATol: 1e-5, RTol: 1e-4}, 2, 3, 3, 5)
	ln := NewLayerNorm(7)
	uniform(ln.Weight.Value, rng, 1)
	checkLayer(t, ln, 10, gradcheck.Options{ATol: 1e-5, RTol: 1e-4}, 2, 3, 7)
}

func TestGradientInception(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	m := NewInception(rng, 3, InceptionConfig{Out1x1: 2, Reduce3x3: 2, Out3x3: 3, Reduce5x5: 1, Out5x5: 2, PoolProj: 2})
	checkLayer(t, m, 11, gradcheck.Options{ATol: 1e-5, RTol: 1e-4}, 2, 3, 5, 4)
	names, _ := Params(m)
	if names[0] != "branch1.conv.weight" || names[len(names)-1] != "branch4.1.bn.bias" {
		t.Fatalf("unexpected names %v", names)
	}
}

func TestGradientChannelAttention(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	checkLayer(t, NewChannelAttention(rng, 6, 2), 12, gradcheck.Options{}, 2, 6, 3, 5)
}

func TestGradientSpatialAttention(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	checkLayer(t, NewSpatialAttention(rng), 13, gradcheck.Options{}, 2, 3, 5, 6)
}

func TestGradientCBAM(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	checkLayer(t, NewCBAM(rng, 4, 2), 14, gradcheck.Options{}, 1, 4, 4, 3)
}

func TestGradientDropoutLayer(t *testing.T) {
	d := NewDropout(0.3, 42)
	Convert(d, engine.Float64)
	rng := rand.New(rand.NewPCG(1, 9))
	x := gradcheck.Rand(rng, -1, 1, 4, 9)
	// Each forward draws a new mask; the check needs one fixed mask, so the
	// stream position is rewound before every forward pass.
	start := d.RNGState()
	gradcheck.Check(t, []*engine.Tensor{x},
		func() (*engine.Tensor, error) { d.SetRNGState(start); return d.Forward(x) },
		func(dy *engine.Tensor) ([]*engine.Tensor, error) {
			d.SetRNGState(start)
			if _, err := d.Forward(x); err != nil {
				return nil, err
			}
			dx, err := d.Backward(dy)
			return []*engine.Tensor{dx}, err
		}, gradcheck.Options{})
}

// In evaluation mode dropout is the identity, its stream untouched, as
// nn.Dropout under model.eval().
func TestDropoutInEvaluationIsTheIdentity(t *testing.T) {
	d := NewDropout(0.5, 42)
	d.SetTraining(false)
	x := gradcheck.Rand(rand.New(rand.NewPCG(2, 9)), -1, 1, 4, 9).As(engine.Float32)
	start := d.RNGState()
	y, err := d.Forward(x)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range x.Values() {
		if y.Values()[i] != v {
			t.Fatalf("evaluation dropout changed x[%d]: %v → %v", i, v, y.Values()[i])
		}
	}
	if d.RNGState() != start {
		t.Fatal("evaluation dropout moved the random stream")
	}
}

func TestGradientSpatialGatingUnit(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	s := NewSpatialGatingUnit(rng, 5, 3)
	uniform(s.ProjWeight.Value, rng, 0.5) // away from the near-zero init, so W matters
	uniform(s.NormWeight.Value, rng, 1)
	checkLayer(t, s, 15, gradcheck.Options{ATol: 1e-5, RTol: 1e-4}, 2, 5, 6)
}

func TestGradientGMLPBlock(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 11))
	b := NewGMLPBlock(rng, 4, 6, 8)
	uniform(b.SGU.ProjWeight.Value, rng, 0.5)
	checkLayer(t, b, 16, gradcheck.Options{ATol: 1e-5, RTol: 1e-4}, 2, 4, 6)
}

func TestGradientPatchEmbedTokenMean(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 12))
	s := (&Sequential{}).Append("patch", NewPatchEmbed(rng, 3, 2, 5)).Append("mean", &TokenMean{})
	checkLayer(t, s, 17, gradcheck.Options{}, 2, 3, 4, 6)
}

// GELU's layer keeps its derivative in training (engine.GELUForwardDeriv)
// and gives the recomputing backward's bits; evaluating keeps none, and a
// backward after it still recomputes from the input.
func TestGELULayerKeepsItsDerivative(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	x, dout := engine.New(engine.Float32, 6, 50), engine.New(engine.Float32, 6, 50)
	uniform(x, rng, 4)
	uniform(dout, rng, 1)
	want := engine.New(engine.Float32, 6, 50)
	if err := engine.ActivationBackward(want, dout, x, nil, engine.GELU); err != nil {
		t.Fatal(err)
	}
	a := NewGELU()
	for _, training := range []bool{true, false} {
		a.SetTraining(training)
		if _, err := a.Forward(x); err != nil {
			t.Fatal(err)
		}
		if a.derived != training {
			t.Errorf("training %v: derivative kept %v", training, a.derived)
		}
		dx, err := a.Backward(dout)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range dx.Float32() {
			if v != want.Float32()[i] {
				t.Fatalf("training %v: dx[%d] %v, recomputed %v", training, i, v, want.Float32()[i])
			}
		}
	}
}
