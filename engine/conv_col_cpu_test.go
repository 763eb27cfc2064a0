package engine

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// conv_col_cpu.c against the Go loops of conv.go (im2colGo, col2imGo), on
// the same input, bit for bit, at every ISA level: strides 1, 2 and 3,
// dilation, padding up to and past the kernel's reach, windows wider than
// the input, rows around the 8- and 16-lane widths.
func TestConvColCMatchesGoLoops(t *testing.T) {
	if !haveColC {
		t.Skip("skipped: no C col loops in this build (cgo on amd64 only)")
	}
	glueAtEveryISALevel(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(23, 23))
		for _, c := range []struct {
			cin, h, w, k int
			p            Conv2DParams
		}{
			{64, 32, 32, 3, Conv2DSquare(2, 1, 1, 1)},
			{3, 33, 35, 3, Conv2DSquare(2, 1, 1, 1)},
			{2, 17, 40, 5, Conv2DSquare(1, 2, 1, 1)},
			{2, 9, 19, 3, Conv2DSquare(3, 2, 1, 1)},
			{2, 20, 37, 3, Conv2DSquare(2, 2, 2, 1)},
			{1, 6, 67, 4, Conv2DSquare(2, 0, 1, 1)},
			{1, 12, 31, 3, Conv2DSquare(1, 2, 2, 1)},
			{2, 4, 5, 3, Conv2DSquare(2, 3, 1, 1)},
			{1, 2, 3, 5, Conv2DSquare(1, 2, 1, 1)},
			{4, 16, 16, 7, Conv2DParams{StrideH: 2, StrideW: 1, PadH: 3, PadW: 1}},
			{2, 8, 49, 1, Conv2DParams{StrideH: 1, StrideW: 2}},
		} {
			g, msg := convGeometry([]int{1, c.cin, c.h, c.w}, []int{4, c.cin, c.k, c.k}, c.p)
			if msg != "" {
				t.Fatalf("%+v: %s", c, msg)
			}
			name := fmt.Sprintf("%dx%dx%d k%d %v", c.cin, c.h, c.w, c.k, c.p)
			x := randF32(rng, c.cin*c.h*c.w)
			colGo, colC := randF32(rng, g.kg*g.p), randF32(rng, g.kg*g.p) // stale values must go
			im2colGo(colGo, x, &g)
			im2colC(colC, x, &g)
			sameBits(t, name+" im2col", len(colGo), colC, colGo)
			dxGo := randF32(rng, len(x))
			dxC := append([]float32(nil), dxGo...)
			col2imGo(dxGo, colGo, &g)
			col2imC(dxC, colGo, &g)
			sameBits(t, name+" col2im", len(dxGo), dxC, dxGo)
		}
	})
}
