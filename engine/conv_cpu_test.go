package engine_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

// Shapes aimed at conv_cpu.c's float32 kernels: output channels not a
// multiple of the 6-row tile, rows longer than one tile (16 columns at
// AVX2, 32 at AVX-512) with a ragged tail, row-by-row and wide-frame columns, padding, dilation, groups,
// weight gradients through dot products (few output channels) and through
// the transposed output gradient (16 and more, ragged past a multiple of 8),
// and the CBAM/LeNet layer shapes.
var convFastCases = []convCase{
	{"rows-ragged", 2, 3, 9, 37, 13, 3, 3, engine.Conv2DSquare(1, 1, 1, 1), true},
	{"wide-frame", 3, 6, 14, 14, 16, 5, 5, engine.Conv2DParams{}, true},
	{"cbam-stem", 2, 3, 32, 32, 32, 3, 3, engine.Conv2DSquare(1, 1, 1, 1), true},
	{"spatial-attention", 2, 2, 16, 16, 1, 7, 7, engine.Conv2DSquare(1, 3, 1, 1), false},
	{"dilated-groups", 2, 6, 11, 10, 9, 3, 3, engine.Conv2DParams{PadH: 2, PadW: 1, DilationH: 2, Groups: 3}, true},
	{"five-by-five-pad", 1, 8, 16, 16, 8, 5, 5, engine.Conv2DSquare(1, 2, 1, 1), true},
	{"tiny-row", 2, 4, 3, 5, 7, 3, 3, engine.Conv2DSquare(1, 1, 1, 1), true},
	{"transposed-dw-groups", 2, 4, 9, 12, 40, 3, 3, engine.Conv2DSquare(1, 1, 1, 2), true},
	{"transposed-dw-ragged", 3, 5, 7, 6, 17, 3, 2, engine.Conv2DParams{PadW: 1}, true},
	// For AVX-512's 16-float vectors: rows of exactly 16 and of 12 (two to a
	// tile; an odd count leaves one), rows past 32 with a ragged tail, and
	// 56 output channels (doutᵀ 56 wide: 32 + 16 + 8).
	{"rows-of-16", 2, 5, 16, 16, 13, 3, 3, engine.Conv2DSquare(1, 1, 1, 1), true},
	{"odd-rows-of-12", 3, 3, 9, 12, 19, 3, 3, engine.Conv2DSquare(1, 1, 1, 1), true},
	{"rows-of-35", 1, 4, 6, 35, 56, 3, 3, engine.Conv2DSquare(1, 1, 1, 1), true},
	{"five-by-five-rows-of-11", 2, 6, 15, 11, 16, 5, 5, engine.Conv2DParams{}, true},
	// Weight gradients by dot products over 5, 6 and 10 output channels:
	// AVX2's tiles of 3 rows by 4 taps, 3 + 2 and 4 + 3 + 3 rows (dw_rows).
	{"lenet1-dw-six", 2, 3, 12, 12, 6, 5, 5, engine.Conv2DSquare(1, 2, 1, 1), true},
	{"dw-five", 2, 2, 9, 9, 5, 3, 3, engine.Conv2DSquare(1, 1, 1, 1), true},
	{"dw-ten", 1, 3, 8, 13, 10, 3, 3, engine.Conv2DSquare(1, 1, 1, 1), false},
}

// Float32 forward and backward against Conv2DReference, float64 sums; where
// the C path is not built (CGO_ENABLED=0, off amd64) the same shapes run col.
func TestConv2DFastMatchesReference(t *testing.T) {
	for i, c := range convFastCases {
		rng := rand.New(rand.NewPCG(9, uint64(i)))
		xs, ws := c.shapes()
		x, w, b, os := c.float32Inputs(t, rng)
		dout := randTensor(rng, engine.Float32, os...)
		wantOut, wantDx, wantDw, wantDb, err := engine.Conv2DReference(x, w, b, dout, c.p)
		if err != nil {
			t.Fatal(err)
		}
		out := engine.New(engine.Float32, os...)
		out.Fill(math.NaN())
		if err := engine.Conv2DForward(out, x, w, b, c.p); err != nil {
			t.Fatal(err)
		}
		dx := engine.New(engine.Float32, xs...)
		dx.Fill(math.NaN())
		dw, db := engine.New(engine.Float32, ws...), engine.New(engine.Float32, c.cout)
		dw.Fill(0.5)
		db.Fill(0.5)
		if err := engine.Conv2DBackward(dx, dw, db, dout, x, w, c.p); err != nil {
			t.Fatal(err)
		}
		for _, cmp := range []struct {
			name      string
			got, want []float64
			offset    float64
		}{{"out", out.Values(), wantOut, 0}, {"dx", dx.Values(), wantDx, 0},
			{"dw", dw.Values(), wantDw, 0.5}, {"db", db.Values(), wantDb, 0.5}} {
			want := make([]float64, len(cmp.want))
			for j, v := range cmp.want {
				want[j] = v + cmp.offset
			}
			if msg := gradcheck.Close(cmp.got, want, 1e-4, 1e-4); msg != "" {
				t.Errorf("%s %s: %s", c.name, cmp.name, msg)
			}
		}
		// Weight gradient alone (no dx), as for a network's first layer.
		dw2 := engine.New(engine.Float32, ws...)
		if err := engine.Conv2DBackward(nil, dw2, nil, dout, x, w, c.p); err != nil {
			t.Fatal(err)
		}
		if msg := gradcheck.Close(dw2.Values(), wantDw, 1e-4, 1e-4); msg != "" {
			t.Errorf("%s dw only: %s", c.name, msg)
		}
	}
}

// At AVX-512 the kernels run 16-float vectors and 8-row tiles where AVX2 runs
// 8 and 6, but each output and input-gradient element is the same FMA chain,
// and so is each weight-gradient element where it goes through doutᵀ (16
// output channels a group or more): the two levels give the same bits.
// Fewer channels take dot products, whose lane sums differ with the width.
func TestConv2DFastAVX512GivesTheAVX2Bits(t *testing.T) {
	if !slices.Contains(engine.CPUISAs(), "avx512") {
		t.Skip("skipped: this CPU has no AVX-512")
	}
	defer restoreISA(t)()
	cases := append(slices.Clone(convFastCases),
		convCase{"cnn2", 2, 32, 32, 32, 32, 3, 3, engine.Conv2DSquare(1, 1, 1, 1), true},
		convCase{"cnn4", 2, 64, 16, 16, 64, 3, 3, engine.Conv2DSquare(1, 1, 1, 1), true})
	for i, c := range cases {
		rng := rand.New(rand.NewPCG(11, uint64(i)))
		xs, ws := c.shapes()
		x, w, b := randTensor(rng, engine.Float32, xs...), randTensor(rng, engine.Float32, ws...), randTensor(rng, engine.Float32, c.cout)
		os, err := engine.Conv2DOutputShape(xs, ws, c.p)
		if err != nil {
			t.Fatal(err)
		}
		dout := randTensor(rng, engine.Float32, os...)
		var results [2][]*engine.Tensor
		for j, level := range []string{"avx2", "avx512"} {
			if err := engine.SetCPUISA(level); err != nil {
				t.Fatal(err)
			}
			out, dx := engine.New(engine.Float32, os...), engine.New(engine.Float32, xs...)
			dw, db := engine.New(engine.Float32, ws...), engine.New(engine.Float32, c.cout)
			opsMust(t, engine.Conv2DForward(out, x, w, b, c.p))
			opsMust(t, engine.Conv2DBackward(dx, dw, db, dout, x, w, c.p))
			results[j] = []*engine.Tensor{out, dx, db, dw}
		}
		names := []string{"out", "dx", "db", "dw"}
		if c.cout/max(c.p.Groups, 1) < 16 {
			names = names[:3]
		}
		for k, name := range names {
			if !slices.Equal(results[0][k].Float32(), results[1][k].Float32()) {
				t.Errorf("%s %s: AVX-512 and AVX2 results differ", c.name, name)
			}
		}
	}
}

// The forward with the output channels in the lanes (oc_gemm) is each
// output's FMA chain in the row path's order, so the two give the same bits
// on every shape either takes, at every level: forced on and off, on the fast
// path's shapes and LeNet's second layer (rows of 12 and 10, the shape it is
// chosen for), with and without bias. Against the reference it is held by
// TestConv2DFastMatchesReference, where it runs on the shapes it pays on.
func TestConv2DOutputChannelLanesGiveTheRowBits(t *testing.T) {
	defer restoreISA(t)()
	cases := append(slices.Clone(convFastCases),
		convCase{"lenet2-32", 3, 6, 16, 16, 16, 5, 5, engine.Conv2DParams{}, true},
		convCase{"lenet2-28", 2, 6, 14, 14, 16, 5, 5, engine.Conv2DParams{}, false},
		convCase{"channels-40", 2, 3, 7, 9, 40, 3, 3, engine.Conv2DSquare(1, 1, 1, 1), true},
		convCase{"one-pixel", 2, 4, 3, 3, 9, 3, 3, engine.Conv2DParams{}, true})
	for _, level := range engine.CPUISAs() {
		if level == "generic" {
			continue
		}
		if err := engine.SetCPUISA(level); err != nil {
			t.Fatal(err)
		}
		for i, c := range cases {
			x, w, b, os := c.float32Inputs(t, rand.New(rand.NewPCG(13, uint64(i))))
			var outs [2][]float32
			for j, mode := range []string{"off", "always"} {
				restore := engine.SetConvOCLanes(mode)
				out := engine.New(engine.Float32, os...)
				out.Fill(math.NaN())
				opsMust(t, engine.Conv2DForward(out, x, w, b, c.p))
				restore()
				outs[j] = out.Float32()
			}
			if !slices.Equal(outs[0], outs[1]) {
				t.Errorf("%s %s: output-channel lanes and rows differ", level, c.name)
			}
		}
	}
}

// TestConv2DOutputChannelLanesChoice holds where the forward takes the
// output-channel lanes: LeNet's second layer (16 channels, rows of 12 and 10)
// at AVX2 (two ymm of channels) everywhere, at AVX-512 (one zmm) only on a
// CPU that splits its zmm FMAs (Zen 4); never where rows fill the lanes
// (inception's 5×5 on 16×16) or the channels are few (LeNet's first layer).
func TestConv2DOutputChannelLanesChoice(t *testing.T) {
	lenet2 := func(hw int) ([]int, []int, engine.Conv2DParams) {
		return []int{8, 6, hw, hw}, []int{16, 6, 5, 5}, engine.Conv2DSquare(1, 0, 1, 1)
	}
	x28, w28, p28 := lenet2(14)
	x32, w32, p32 := lenet2(16)
	incX, incW, incP := []int{8, 8, 16, 16}, []int{16, 8, 5, 5}, engine.Conv2DSquare(1, 2, 1, 1)
	l1X, l1W, l1P := []int{8, 1, 28, 28}, []int{6, 1, 5, 5}, engine.Conv2DSquare(1, 2, 1, 1)
	for _, split := range []bool{false, true} {
		restore := engine.SetZMMSplit(split)
		for _, c := range []struct {
			name   string
			x, w   []int
			p      engine.Conv2DParams
			vl, mr int
			want   bool
		}{
			{"lenet2-28 avx2", x28, w28, p28, 8, 6, true},
			{"lenet2-32 avx2", x32, w32, p32, 8, 6, true},
			{"lenet2-28 avx512", x28, w28, p28, 16, 8, split},
			{"lenet2-32 avx512", x32, w32, p32, 16, 8, split},
			{"inception 5x5 avx512", incX, incW, incP, 16, 8, false},
			{"lenet1 avx512", l1X, l1W, l1P, 16, 8, false},
			{"lenet1 avx2", l1X, l1W, l1P, 8, 6, false},
		} {
			if got := engine.ConvOCLanesPay(c.x, c.w, c.p, c.vl, c.mr); got != c.want {
				t.Errorf("zmm split %v, %s: output-channel lanes %v, want %v", split, c.name, got, c.want)
			}
		}
		restore()
	}
}
