package layers

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// A BatchNorm2D followed by a ReLU in a Sequential runs as one op in a CPU
// training step (batch norm's apply takes the max, its backward masks):
// every zoo model with batch norm gives the same logits and parameter
// gradients, bit for bit, as the same model with the pair unlinked (two
// ops), over two steps (the second reuses the buffers).
func TestBatchNormReLUFusedGivesTheSameBits(t *testing.T) {
	for _, name := range []string{"cnn", "inception", "cbam"} {
		fused, plain := buildTwice(t, name, Spec{Channels: 3, Height: 16, Width: 16, Classes: 10, Seed: 5})
		pairs := 0
		WalkLayers(fused, func(_ string, l Layer) {
			if b, ok := l.(*BatchNorm2D); ok && b.relu != nil {
				pairs++
			}
		})
		WalkLayers(plain, func(_ string, l Layer) {
			if b, ok := l.(*BatchNorm2D); ok {
				b.relu = nil
			}
		})
		if pairs == 0 {
			t.Fatalf("%s: no batch norm is linked to the ReLU after it", name)
		}
		rng := rand.New(rand.NewPCG(6, 7))
		for step := 0; step < 2; step++ {
			x := gradcheck.Rand(rng, -1, 1, 4, 3, 16, 16).As(engine.Float32)
			dout := gradcheck.Rand(rng, -1, 1, 4, 10).As(engine.Float32)
			got, want := stepBits(t, fused, x, dout), stepBits(t, plain, x, dout)
			ran := 0
			WalkLayers(fused, func(_ string, l Layer) {
				if b, ok := l.(*BatchNorm2D); ok && b.fused && b.relu.fused {
					ran++
				}
			})
			if ran != pairs {
				t.Errorf("%s: %d of %d linked pairs ran fused", name, ran, pairs)
			}
			for i := range want {
				if !slices.Equal(got[i], want[i]) {
					t.Errorf("%s step %d: result %d differs between fused and separate batch norm and ReLU", name, step, i)
				}
			}
		}
	}
}

// stepBits runs m forward and backward on x with the gradient dout and
// returns the logits and every parameter gradient (zeroed first). x and
// dout are host tensors; on the GPU (dev CUDA) they go up and the results
// come back.
func stepBits(t *testing.T, m *Model, x, dout *engine.Tensor) [][]float32 {
	return stepBitsOn(t, engine.CPU, m, x, dout)
}

func stepBitsOn(t *testing.T, dev engine.Device, m *Model, x, dout *engine.Tensor) [][]float32 {
	t.Helper()
	on := func(h *engine.Tensor) *engine.Tensor {
		if dev == engine.CPU {
			return h
		}
		d, err := h.To(dev)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.Release)
		return d
	}
	host := func(d *engine.Tensor) []float32 {
		h, err := engine.ToCPU(nil, d)
		if err != nil {
			t.Fatal(err)
		}
		return slices.Clone(h.Float32())
	}
	var res [][]float32
	m.Walk("", func(_ string, p *Param) {
		if p.Grad != nil {
			if err := p.Grad.Zero(); err != nil {
				t.Fatal(err)
			}
		}
	})
	y, err := m.Forward(on(x))
	if err != nil {
		t.Fatal(err)
	}
	res = append(res, host(y))
	if _, err := m.Backward(on(dout)); err != nil {
		t.Fatal(err)
	}
	m.Walk("", func(_ string, p *Param) {
		if p.Grad != nil {
			res = append(res, host(p.Grad))
		}
	})
	return res
}

// buildTwice builds two identical models.
func buildTwice(t *testing.T, name string, spec Spec) (*Model, *Model) {
	t.Helper()
	a, err := Build(name, spec)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(name, spec)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// unlinkReLUs makes every ReLU of m run as its own op.
func unlinkReLUs(m *Model) {
	WalkLayers(m, func(_ string, l Layer) {
		switch l := l.(type) {
		case *BatchNorm2D:
			l.relu = nil
		case *Linear:
			if l.relu != nil {
				l.relu.fused, l.relu = false, nil
			}
		case *MaxPool2D:
			if l.relu != nil {
				l.relu.pool, l.relu = nil, nil
			}
		}
	})
}

// A Linear followed by a ReLU in a Sequential runs as one op
// (engine.LinearReLUForward): mlp and lenet give the same logits and
// parameter gradients, bit for bit, as the same model with every pair
// unlinked, over two training steps and in evaluation.
func TestLinearReLUFusedGivesTheSameBits(t *testing.T) {
	for _, name := range []string{"mlp", "lenet"} {
		spec := Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Seed: 4, Hidden: 32}
		fused, plain := buildTwice(t, name, spec)
		pairs := 0
		WalkLayers(fused, func(_ string, l Layer) {
			if lin, ok := l.(*Linear); ok && lin.relu != nil {
				pairs++
			}
		})
		unlinkReLUs(plain)
		if pairs == 0 {
			t.Fatalf("%s: no Linear is linked to the ReLU after it", name)
		}
		rng := rand.New(rand.NewPCG(10, 11))
		sameBitsOverSteps(t, name+" (Linear and ReLU)", fused, plain, rng, []int{4, 1, 28, 28}, nil)
	}
}
