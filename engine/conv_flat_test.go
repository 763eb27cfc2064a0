package engine_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// flatCase is a "same" stride-1 convolution: padding kh/2 and kw/2.
type flatCase struct {
	n, cin, h, w, cout, kh, kw, groups int
	bias                               bool
}

// tensors draws c's input, weights, output gradient and (with c.bias) bias,
// and gives its parameters.
func (c flatCase) tensors(rng *rand.Rand) (x, w, dout, b *engine.Tensor, p engine.Conv2DParams) {
	p = engine.Conv2DParams{PadH: c.kh / 2, PadW: c.kw / 2, Groups: c.groups}
	x, w = randTensor(rng, engine.Float32, c.n, c.cin, c.h, c.w), randTensor(rng, engine.Float32, c.cout, c.cin/c.groups, c.kh, c.kw)
	dout = randTensor(rng, engine.Float32, c.n, c.cout, c.h, c.w)
	if c.bias {
		b = randTensor(rng, engine.Float32, c.cout)
	}
	return x, w, dout, b, p
}

// The flat paths (conv_cpu.c's flat_gemm: a "same" stride-1 convolution's
// forward and input gradient over the unpadded planes, the padding done by
// lane masks) against the float64 reference, and the same bits at AVX2 and
// AVX-512. Shapes: planes smaller than, equal to and ragged past a vector
// (8 or 16 lanes) and a tile (twice that), one row or one column, planes of
// 4 KiB (whose loads alias in L1), kernels 1×3 to 7×7, groups, channel
// counts off the 6- and 8-row tiles and the 8-plane blocks (the flat paths
// take 8 planes and more).
func TestConv2DFlatMatchesReference(t *testing.T) {
	cases := []flatCase{
		{2, 8, 28, 28, 32, 3, 3, 1, false}, {2, 32, 14, 14, 64, 3, 3, 1, false}, {1, 32, 64, 16, 32, 3, 3, 1, true},
		{1, 8, 1, 1, 9, 3, 3, 1, true}, {1, 9, 1, 9, 10, 3, 3, 1, false}, {1, 12, 9, 1, 8, 3, 3, 1, true},
		{2, 10, 3, 5, 11, 5, 5, 1, true}, {1, 16, 16, 16, 16, 5, 5, 2, false}, {1, 8, 16, 16, 8, 7, 7, 1, false},
		{1, 13, 4, 33, 9, 1, 3, 1, true}, {1, 16, 7, 5, 18, 3, 5, 2, true}, {1, 19, 6, 7, 9, 3, 3, 1, false},
	}
	rng := rand.New(rand.NewPCG(3, 17))
	for len(cases) < 48 {
		k := []int{1, 3, 5, 7}
		g := 1 + rng.IntN(2)
		cases = append(cases, flatCase{1 + rng.IntN(2), g * (8 + rng.IntN(12)), 1 + rng.IntN(20), 1 + rng.IntN(40),
			g * (8 + rng.IntN(16)), k[1+rng.IntN(3)], k[rng.IntN(4)], g, rng.IntN(2) == 0})
	}
	defer restoreISA(t)()
	defer engine.SetConvWinograd("off")() // else cnn's shapes here would test Winograd
	levels := engine.CPUISAs()[1:]        // the levels the C kernels run at (none without AVX2)
	for i, c := range cases {
		x, w, dout, b, p := c.tensors(rng)
		wantOut, wantDx, _, _, err := engine.Conv2DReference(x, w, b, dout, p)
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("case %d %dx%dx%dx%d k%dx%d g%d co%d", i, c.n, c.cin, c.h, c.w, c.kh, c.kw, c.groups, c.cout)
		sameBitsAtLevels(t, levels, []string{"out", "dx"}, name, func(level string) []*engine.Tensor {
			out, dx := engine.New(engine.Float32, c.n, c.cout, c.h, c.w), engine.New(engine.Float32, c.n, c.cin, c.h, c.w)
			out.Fill(math.NaN())
			dx.Fill(math.NaN())
			opsMust(t, engine.Conv2DForward(out, x, w, b, p))
			opsMust(t, engine.Conv2DBackward(dx, nil, nil, dout, x, w, p))
			if msg := gradcheck.Close(out.Values(), wantOut, 1e-4, 1e-4); msg != "" {
				t.Errorf("%s %s out: %s", name, level, msg)
			}
			if msg := gradcheck.Close(dx.Values(), wantDx, 1e-4, 1e-4); msg != "" {
				t.Errorf("%s %s dx: %s", name, level, msg)
			}
			return []*engine.Tensor{out, dx}
		})
	}
}

// sameBitsAtLevels runs run at each of levels and reports each of its
// results (named by passes) whose bits differ from the first level's.
func sameBitsAtLevels(t *testing.T, levels, passes []string, name string, run func(level string) []*engine.Tensor) {
	t.Helper()
	var first []*engine.Tensor
	for _, level := range levels {
		opsMust(t, engine.SetCPUISA(level))
		got := run(level)
		if first == nil {
			first = got
			continue
		}
		for k := range got {
			if !slices.Equal(first[k].Float32(), got[k].Float32()) {
				t.Errorf("%s %s: %s differs from %s's bits", name, level, passes[k], levels[0])
			}
		}
	}
}
