package layers

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// On the GPU, as on the CPU, a BatchNorm2D, a Linear or a MaxPool2D linked
// to its ReLU runs fused in a training step, and the step gives the bits of
// the same model with the pairs unlinked: cnn's batch norms and Linear take
// their ReLUs, lenet's max pools and Linears take theirs.
func TestCUDAFusedPairsGiveTheSameBits(t *testing.T) {
	if _, err := engine.OpenDevice(engine.CUDA); err != nil {
		t.Skipf("skipped: no CUDA device (%v)", err)
	}
	for _, c := range []struct {
		name string
		size int // the smallest each takes: the emulator is slow
	}{{"cnn", 8}, {"lenet", 12}} {
		name := c.name
		spec := Spec{Channels: 1, Height: c.size, Width: c.size, Classes: 10, Seed: 5}
		fused, plain := buildTwice(t, name, spec)
		unlinkReLUs(plain)
		for _, m := range []*Model{fused, plain} {
			if err := ToDevice(m, engine.CUDA); err != nil {
				t.Fatal(err)
			}
			defer Release(m)
		}
		rng := rand.New(rand.NewPCG(6, 7))
		for step := range 2 {
			x := gradcheck.Rand(rng, -1, 1, 2, 1, c.size, c.size).As(engine.Float32)
			dout := gradcheck.Rand(rng, -1, 1, 2, 10).As(engine.Float32)
			got, want := stepBitsOn(t, engine.CUDA, fused, x, dout), stepBitsOn(t, engine.CUDA, plain, x, dout)
			ran := 0
			WalkLayers(fused, func(_ string, l Layer) {
				switch l := l.(type) {
				case *BatchNorm2D:
					if l.fused && l.relu.fused {
						ran++
					}
				case *MaxPool2D:
					if l.fused && l.relu.pooled {
						ran++
					}
				case *Linear:
					if l.relu != nil && l.relu.fused {
						ran++
					}
				}
			})
			if ran < 2 {
				t.Errorf("%s step %d: no pair ran fused on the GPU", name, step)
			}
			for i := range want {
				if !slices.Equal(got[i], want[i]) {
					t.Errorf("%s step %d: result %d differs between the fused and the separate ops on the GPU", name, step, i)
				}
			}
		}
	}
}
