package engine_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// The optimisers' reference is their float64 Go loop (optim.go), itself
// checked against PyTorch's recurrences in optim_test.go. The float32 path
// (the C kernels where the machine has them, the same loop otherwise) is
// compared with it on lengths awkward for a vector kernel: one element,
// shorter than a vector, a vector and a ragged tail, just off two and four
// vectors. Three steps each; 1e-5 relative (float32 rounding over three
// steps) + 1e-7 absolute, below AdamW's second moments (~1e-4).
func TestOptimizerFloat32MatchesFloat64Loop(t *testing.T) {
	for _, n := range []int{1, 3, 9, 15, 17, 33} {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(46, uint64(n)))
			w, g := gradcheck.Rand(rng, -1, 1, n), gradcheck.Rand(rng, -1, 1, n)
			sgd := engine.SGDConfig{LR: 0.05, Momentum: 0.9, WeightDecay: 5e-4, Nesterov: true}
			var want []*engine.Tensor
			for _, dt := range []engine.DType{engine.Float64, engine.Float32} {
				ws, wa, gs := w.As(dt), w.As(dt), g.As(dt)
				buf, m, v := engine.New(dt, n), engine.New(dt, n), engine.New(dt, n)
				for step := 1; step <= 3; step++ {
					opsMust(t, engine.SGDStep(ws, gs, buf, sgd))
					adam := engine.AdamWConfig{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.01, Step: step}
					opsMust(t, engine.AdamWStep(wa, gs, m, v, adam))
				}
				got := []*engine.Tensor{ws, buf, wa, m, v}
				if want == nil {
					want = got
					continue
				}
				for k, name := range []string{"sgd w", "sgd buf", "adamw w", "adamw m", "adamw v"} {
					opsClose(t, name, got[k], want[k], 1e-7, 1e-5)
				}
			}
		})
	}
}
