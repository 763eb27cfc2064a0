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
			// Rows g.p apart, and further apart as in a product over
			// several images (conv.go's batched col): the gaps stay as they were.
			for _, ld := range []int{g.p, g.p + 5} {
				colGo, colC := randF32(rng, g.kg*ld), randF32(rng, g.kg*ld) // stale values must go
				gapGo, gapC := append([]float32(nil), colGo...), append([]float32(nil), colC...)
				im2colGo(colGo, ld, x, &g)
				im2colC(colC, ld, x, &g)
				for r := range g.kg {
					sameBits(t, fmt.Sprintf("%s ld %d im2col row %d", name, ld, r), g.p, colC[r*ld:], colGo[r*ld:r*ld+g.p])
					if ld > g.p {
						sameBits(t, name+" im2col gap", ld-g.p, colGo[r*ld+g.p:], gapGo[r*ld+g.p:(r+1)*ld])
						sameBits(t, name+" im2col gap", ld-g.p, colC[r*ld+g.p:], gapC[r*ld+g.p:(r+1)*ld])
					}
				}
				dxGo := randF32(rng, len(x))
				dxC := append([]float32(nil), dxGo...)
				col2imGo(dxGo, colGo, ld, &g)
				col2imC(dxC, colGo, ld, &g)
				sameBits(t, fmt.Sprintf("%s ld %d col2im", name, ld), len(dxGo), dxC, dxGo)
			}
		}
	})
}

// convBatch batches float32 col-lowered products over small planes only:
// ResNet-18's last stage, not its 56×56 planes, the float64 reference, bf16
// or grouped convolutions.
func TestConvBatchChoice(t *testing.T) {
	if !sgemmInC {
		t.Skip("skipped: no C GEMM in this build, so no batched products")
	}
	geom := func(cin, h, cout, k int, p Conv2DParams, prec Precision) convGeom {
		g, msg := convGeometry([]int{32, cin, h, h}, []int{cout, cin / max(p.Groups, 1), k, k}, p)
		if msg != "" {
			t.Fatal(msg)
		}
		g.prec = prec
		return g
	}
	l4 := geom(512, 7, 512, 3, Conv2DSquare(1, 1, 1, 1), FP32) // P = 49, K = 4608
	if nb := convBatch[float32](&l4, true); nb != 18 {         // the 16 MB cap: 4 Mi floats / (4609·49)
		t.Errorf("ResNet-18 layer4 3×3: %d images a product, want 18", nb)
	}
	short := geom(256, 14, 512, 1, Conv2DSquare(2, 0, 1, 1), FP32) // P = 49, K = 256
	if nb := convBatch[float32](&short, false); nb != 21 {         // ⌈1024/49⌉
		t.Errorf("layer4 shortcut: %d images a product, want 21", nb)
	}
	if nb := convBatch[float32](&short, true); nb != 1 { // K = 256: backward per image
		t.Errorf("layer4 shortcut backward: %d images a product, want 1", nb)
	}
	for name, g := range map[string]convGeom{
		"56×56 planes": geom(64, 112, 128, 3, Conv2DSquare(2, 1, 1, 1), FP32),
		"bf16":         geom(512, 7, 512, 3, Conv2DSquare(1, 1, 1, 1), BF16),
		"groups":       geom(512, 7, 512, 3, Conv2DSquare(1, 1, 1, 2), FP32),
		"gMLP patches": geom(3, 32, 128, 4, Conv2DSquare(4, 0, 1, 1), FP32),
	} {
		if nb := convBatch[float32](&g, false); nb != 1 {
			t.Errorf("%s: %d images a product, want 1", name, nb)
		}
	}
	if nb := convBatch[float64](&l4, false); nb != 1 {
		t.Errorf("float64: %d images a product, want 1", nb)
	}
}
