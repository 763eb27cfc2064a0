package engine_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// The activations' reference is their float64 Go loop (activation.go): short,
// exact math.Erf, math.Exp and math.Tanh, and gradient-checked. The float32
// path (the C kernels with approximate exp and erf where the machine has
// them, the same Go loop otherwise) is compared with it here on lengths that
// are awkward for a vector kernel: one element, shorter than a vector, one
// vector plus a ragged tail, and just off two and four vectors. The inputs are
// float32-representable, so only the kernels' own error shows: 1e-6 absolute
// + relative forward, 1e-5 backward (sigmoid and tanh differentiate from the
// float32 output, where 1−y² cancels).
func TestActivationFloat32MatchesFloat64Loop(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 8, 9, 15, 17, 31, 33, 63} {
		for _, kind := range []engine.Activation{engine.ReLU, engine.GELU, engine.Sigmoid, engine.Tanh} {
			t.Run(fmt.Sprintf("%v/n=%d", kind, n), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(44, uint64(n)))
				x := gradcheck.Rand(rng, -6, 6, n).As(engine.Float32).As(engine.Float64)
				dout := gradcheck.Rand(rng, -1, 1, n).As(engine.Float32).As(engine.Float64)
				var want [2]*engine.Tensor
				for i, dt := range []engine.DType{engine.Float64, engine.Float32} {
					out, dx := engine.New(dt, n), engine.New(dt, n)
					opsMust(t, engine.ActivationForward(out, x.As(dt), kind))
					opsMust(t, engine.ActivationBackward(dx, dout.As(dt), x.As(dt), out, kind))
					if i == 0 {
						want = [2]*engine.Tensor{out, dx}
						continue
					}
					opsClose(t, "forward", out, want[0], 1e-6, 1e-6)
					opsClose(t, "backward", dx, want[1], 1e-5, 1e-5)
				}
			})
		}
	}
}
