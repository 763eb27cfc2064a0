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

// winoCases: the zoo's layers (cnn's 28×28, 14×14, 32×32 and 16×16 at 32 and
// 64 channels), odd and one-pixel-ragged planes (a last tile half outside),
// channels off the 6- and 8-row panels, groups, and the smallest planes and
// channel counts Winograd takes (2 and 3 wide: F(4×4)'s first column group
// holds the whole row), and images whose small planes F(4×4) puts side by
// side in one block (16×16: 4 a block, so 5 leave a short last block; 9,
// split between two threads, leave one after a whole block in a thread's
// part: its missing images must read as zeros, not the last block's).
var winoCases = []flatCase{
	{2, 32, 28, 28, 32, 3, 3, 1, false}, {2, 32, 14, 14, 64, 3, 3, 1, true}, {1, 64, 16, 16, 64, 3, 3, 1, false},
	{2, 16, 7, 9, 17, 3, 3, 1, true}, {1, 19, 5, 4, 23, 3, 3, 1, false}, {1, 16, 4, 4, 16, 3, 3, 1, true},
	{2, 32, 9, 13, 40, 3, 3, 2, true}, {1, 24, 1, 31, 16, 3, 3, 1, false}, {1, 16, 33, 1, 18, 3, 3, 1, true},
	{1, 20, 3, 11, 70, 3, 3, 1, false}, {1, 16, 6, 2, 16, 3, 3, 1, true}, {1, 17, 5, 3, 19, 3, 3, 1, false},
	{5, 24, 16, 16, 32, 3, 3, 1, true}, {3, 16, 9, 8, 16, 3, 3, 2, false}, {9, 16, 16, 16, 16, 3, 3, 1, false},
}

// Winograd's forward, input gradient and weight gradient against the
// float64 reference, on every shape it takes (forced), by each tiling, and
// the same bits at AVX2 and AVX-512 and run after run.
func TestConv2DWinogradMatchesReference(t *testing.T) {
	defer restoreISA(t)()
	levels := engine.CPUISAs()[1:] // the levels the C kernels run at (none without AVX2)
	if len(levels) == 0 {
		t.Skip("no AVX2: the C convolutions (and Winograd) do not run here")
	}
	for _, tiling := range []string{"always2", "always4"} {
		restore := engine.SetConvWinograd(tiling)
		rng := rand.New(rand.NewPCG(5, 23))
		for i, c := range winoCases {
			x, w, dout, b, p := c.tensors(rng)
			wantOut, wantDx, wantDw, _, err := engine.Conv2DReference(x, w, b, dout, p)
			if err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("%s case %d %dx%dx%dx%d g%d co%d", tiling, i, c.n, c.cin, c.h, c.w, c.groups, c.cout)
			passes := []string{"out", "dx", "dw"}
			sameBitsAtLevels(t, levels, passes, name, func(level string) []*engine.Tensor {
				got := winoPasses(t, x, w, b, dout, p)
				for k, want := range [][]float64{wantOut, wantDx, wantDw} {
					atol, rtol := winoTolerance(tiling, k, want)
					if msg := gradcheck.Close(got[k].Values(), want, atol, rtol); msg != "" {
						t.Errorf("%s %s %s: %s", name, level, passes[k], msg)
					}
				}
				if again := winoPasses(t, x, w, b, dout, p); !sameBits(got, again) {
					t.Errorf("%s %s: a second run gives other bits", name, level)
				}
				return got
			})
		}
		restore()
	}
}

// winoTolerance is the bound on pass k (out, dx, dw) of a tiling.
// F(2×2)'s is the flat paths' 1e-4 of each element: out and dx are within
// 1e-5 here, dw, a sum over every pixel of both images, within about 2e-5,
// as the direct sums' dw. F(4×4)'s transforms reach several times the
// inputs' magnitude, so its rounding error scales with the largest result,
// not with each element: on these shapes out and dx are within 1.0e-5 of
// the largest |result| and dw within 5e-6 (the direct sums within 9e-7,
// F(2×2) within 5e-7), and the bound is twice the largest.
func winoTolerance(tiling string, k int, want []float64) (atol, rtol float64) {
	if tiling == "always2" {
		return 1e-4, 1e-4
	}
	largest := 0.0
	for _, v := range want {
		largest = max(largest, math.Abs(v))
	}
	return 2e-5 * largest, 0
}

// winoPasses runs the forward and a full backward.
func winoPasses(t *testing.T, x, w, b, dout *engine.Tensor, p engine.Conv2DParams) []*engine.Tensor {
	t.Helper()
	os, err := engine.Conv2DOutputShape(x.Shape(), w.Shape(), p)
	if err != nil {
		t.Fatal(err)
	}
	out, dx, dw := engine.New(engine.Float32, os...), engine.New(engine.Float32, x.Shape()...), engine.New(engine.Float32, w.Shape()...)
	out.Fill(math.NaN())
	dx.Fill(math.NaN())
	opsMust(t, engine.Conv2DForward(out, x, w, b, p))
	opsMust(t, engine.Conv2DBackward(dx, dw, nil, dout, x, w, p))
	return []*engine.Tensor{out, dx, dw}
}

func sameBits(a, b []*engine.Tensor) bool {
	for i := range a {
		if !slices.Equal(a[i].Float32(), b[i].Float32()) {
			return false
		}
	}
	return true
}

// On cnn's 28×28 layer (a shape Winograd takes by itself, all three passes
// by F(4×4, 3×3)) Winograd and the direct sums agree within the transforms'
// roundings, and turning Winograd off changes each pass's bits: the switch
// reaches all three. "auto2" (KILN_CONV_WINOGRAD=2) runs it by F(2×2, 3×3).
func TestConv2DWinogradIsTaken(t *testing.T) {
	if len(engine.CPUISAs()) < 2 {
		t.Skip("no AVX2: the C convolutions (and Winograd) do not run here")
	}
	if engine.CPUISA() == "generic" { // KILN_CPU_ISA=generic
		t.Skip("skipped: the ISA level is generic, where the C convolutions (and Winograd) do not run")
	}
	rng := rand.New(rand.NewPCG(9, 4))
	x, w, dout, _, p := winoCases[0].tensors(rng)
	wino := winoPasses(t, x, w, nil, dout, p)
	restore := engine.SetConvWinograd("always4")
	wino4 := winoPasses(t, x, w, nil, dout, p)
	restore()
	restore = engine.SetConvWinograd("always2")
	wino2 := winoPasses(t, x, w, nil, dout, p)
	restore()
	restore = engine.SetConvWinograd("auto2") // KILN_CONV_WINOGRAD=2
	auto2 := winoPasses(t, x, w, nil, dout, p)
	restore()
	restore = engine.SetConvWinograd("off")
	direct := winoPasses(t, x, w, nil, dout, p)
	restore()
	if !sameBits(auto2, wino2) {
		t.Error(`"auto2" (KILN_CONV_WINOGRAD=2) does not run this layer by F(2×2, 3×3)`)
	}
	for k, name := range []string{"out", "dx", "dw"} {
		if slices.Equal(wino[k].Float32(), direct[k].Float32()) {
			t.Errorf("%s: Winograd on and off give the same bits: the switch does not reach it", name)
		}
		if !slices.Equal(wino[k].Float32(), wino4[k].Float32()) {
			t.Errorf("%s: a 28-wide plane does not run by F(4×4, 3×3) (winoTileFor)", name)
		}
		atol, rtol := winoTolerance("always4", k, direct[k].Values())
		if msg := gradcheck.Close(wino[k].Values(), direct[k].Values(), 2*atol, 2*rtol); msg != "" {
			t.Errorf("%s: Winograd against the direct sums: %s", name, msg)
		}
	}
}

// Winograd against the direct sums on one 3×3 "same" layer, its forward
// and its backward (dx and dw) side by side: cnn's, inception's and larger
// layers, and small planes and channel counts near winoPays' bounds. Images
// are 16; GFLOP/s count the direct sums' multiply-adds.
func BenchmarkConv2DWinograd(b *testing.B) {
	for _, s := range []struct{ cin, h, cout int }{
		{16, 28, 16}, {16, 8, 16}, {32, 20, 32}, {32, 24, 32}, {32, 28, 32}, {32, 32, 32}, {32, 14, 64}, {64, 14, 64}, {64, 7, 64}, {24, 16, 48},
		{128, 8, 128}, {32, 4, 32}, {64, 32, 64},
	} {
		c := newConvBench(16, s.cin, s.h, s.h, s.cout, 3, engine.Conv2DSquare(1, 1, 1, 1), true)
		flop := 2 * float64(16*s.cout*s.h*s.h*s.cin*9)
		for _, pass := range []string{"forward", "backward"} {
			for _, mode := range []string{"off", "always2", "always4"} {
				name := fmt.Sprintf("%dx%dx%d-%d/%s/%s", s.cin, s.h, s.h, s.cout, pass,
					map[string]string{"off": "direct", "always2": "winograd2", "always4": "winograd4"}[mode])
				b.Run(name, func(b *testing.B) {
					defer engine.SetConvWinograd(mode)()
					if pass == "forward" {
						c.run(b, true, false)
						reportGFLOPs(b, flop)
					} else {
						c.run(b, false, true)
						reportGFLOPs(b, 2*flop)
					}
				})
			}
		}
	}
}
