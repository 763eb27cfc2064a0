package layers

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// Every model of the zoo builds and runs forward and backward at both input
// sizes and with the regression head.
func TestZooShapes(t *testing.T) {
	for _, name := range ModelNames() {
		for _, s := range []Spec{
			{Channels: 1, Height: 28, Width: 28, Classes: 10},
			{Channels: 3, Height: 32, Width: 32, Classes: 10},
			{Channels: 1, Height: 28, Width: 28, Regression: true},
		} {
			m, err := Build(name, s)
			if err != nil {
				t.Fatalf("%s %+v: %v", name, s, err)
			}
			x := engine.New(engine.Float32, 2, s.Channels, s.Height, s.Width)
			x.Fill(0.5)
			y, err := m.Forward(x)
			if err != nil {
				t.Fatalf("%s %+v forward: %v", name, s, err)
			}
			if !y.SameShape(2, s.Outputs()) {
				t.Fatalf("%s: output %v, want [2 %d]", name, y.Shape(), s.Outputs())
			}
			dy := engine.New(engine.Float32, y.Shape()...)
			dy.Fill(0.1)
			if _, err := m.Backward(dy); err != nil {
				t.Fatalf("%s backward: %v", name, err)
			}
			if y.HasNaN() {
				t.Fatalf("%s: NaN output", name)
			}
		}
	}
	if _, err := Build("resnet", Spec{Channels: 1, Height: 28, Width: 28, Classes: 10}); err == nil {
		t.Fatal("unknown model accepted")
	}
}

func TestLeNetParamNamesAndCount(t *testing.T) {
	m, err := Build("lenet", Spec{Channels: 1, Height: 28, Width: 28, Classes: 10})
	if err != nil {
		t.Fatal(err)
	}
	names, _ := Params(m)
	want := []string{"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight", "fc1.bias",
		"fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"}
	if len(names) != len(want) {
		t.Fatalf("names %v", names)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Fatalf("names %v, want %v", names, want)
		}
	}
	// The PyTorch LeNet-5 has 61,706 parameters.
	if n := CountParams(m); n != 61706 {
		t.Fatalf("%d parameters, want 61706", n)
	}
}

// Whole small models pass the float64 gradient check end to end (tiny
// inputs keep it fast); the first layer's input gradient is skipped by
// design, so only parameters are checked.
func TestGradientModels(t *testing.T) {
	for _, c := range []struct {
		name string
		s    Spec
	}{
		{"lenet", Spec{Channels: 1, Height: 12, Width: 12, Classes: 3}},
		{"cbam", Spec{Channels: 2, Height: 8, Width: 8, Classes: 3}},
		{"gmlp", Spec{Channels: 1, Height: 8, Width: 8, Classes: 3, Hidden: 4, Depth: 2}},
		{"inception", Spec{Channels: 1, Height: 8, Width: 8, Classes: 3}},
		{"mlp", Spec{Channels: 1, Height: 6, Width: 6, Classes: 3, Hidden: 5}},
	} {
		for seed := uint64(0); seed < 3; seed++ {
			c.s.Seed = seed
			m, err := Build(c.name, c.s)
			if err != nil {
				t.Fatal(err)
			}
			Convert(m, engine.Float64)
			rng := rand.New(rand.NewPCG(3, seed))
			x := gradcheck.Rand(rng, -1, 1, 2, c.s.Channels, c.s.Height, c.s.Width)
			names, params := Params(m)
			var inputs []*engine.Tensor
			for _, p := range params {
				inputs = append(inputs, p.Value)
			}
			gradcheck.Check(t, inputs,
				func() (*engine.Tensor, error) { return m.Forward(x) },
				func(dy *engine.Tensor) ([]*engine.Tensor, error) {
					if _, err := m.Forward(x); err != nil {
						return nil, err
					}
					ZeroGrad(m)
					_, err := m.Backward(dy)
					var g []*engine.Tensor
					for _, p := range params {
						g = append(g, p.Grad)
					}
					return g, err
				}, gradcheck.Options{ATol: 1e-5, RTol: 1e-4, Names: names, Sample: 6, Seed: seed})
		}
	}
}

// Wrong inputs give errors naming the op, never a panic.
func TestZooRejectsBadInputs(t *testing.T) {
	bad := [][]int{{}, {5}, {2, 784}, {2, 3, 28, 28}, {2, 1, 20, 20}, {2, 1, 3, 3}, {0, 1, 28, 28}, {2, 1, 28, 28, 1}}
	for _, name := range ModelNames() {
		m, err := Build(name, Spec{Channels: 1, Height: 28, Width: 28, Classes: 10})
		if err != nil {
			t.Fatal(err)
		}
		for _, shape := range bad {
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("%s on input %v panicked: %v", name, shape, r)
					}
				}()
				_, err := m.Forward(engine.New(engine.Float32, shape...))
				if err == nil {
					t.Errorf("%s accepted input %v", name, shape)
				} else if !strings.Contains(err.Error(), "model "+name) {
					t.Errorf("%s: error %q does not name the model", name, err)
				}
			}()
		}
	}
}

// No zoo model computes the input gradient of its first layer: nothing reads
// it, and for an MLP behind its Flatten it is a third of the first Linear's
// backward work.
func TestZooSkipsTheInputGradient(t *testing.T) {
	for _, name := range ModelNames() {
		s := Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Seed: 1}
		m, err := Build(name, s)
		if err != nil {
			t.Fatal(err)
		}
		m.SetTraining(true)
		x := engine.New(engine.Float32, 2, 1, 28, 28)
		y, err := m.Forward(x)
		if err != nil {
			t.Fatal(err)
		}
		dx, err := m.Backward(engine.New(engine.Float32, y.Shape()...))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if dx != nil {
			t.Errorf("%s: the backward pass computed the input gradient %v", name, dx)
		}
	}
}
