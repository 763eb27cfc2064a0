package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// channelpool_cpu.c against the Go loops of channelpool.go, called directly
// on the same input, bit for bit, at every ISA level: pixel counts and plane
// sizes around the 8- and 16-lane widths, ties, ±0, infinities and NaNs
// (channel 0 and later ones, several in a plane).

// glueAtEveryISALevel runs f once per level this CPU runs, then puts back the
// level that was in use.
func glueAtEveryISALevel(t *testing.T, f func(t *testing.T)) {
	was := CPUISA()
	defer func() {
		if err := SetCPUISA(was); err != nil {
			t.Error(err)
		}
	}()
	for _, level := range CPUISAs() {
		t.Run(level, func(t *testing.T) {
			if err := SetCPUISA(level); err != nil {
				t.Fatal(err)
			}
			f(t)
		})
	}
}

// glueFloats fills a float32 tensor with random values, many of them
// tied (small integers, ±0, ±Inf), and a NaN in about one in nanEvery (none
// when nanEvery is 0).
func glueFloats(rng *rand.Rand, nanEvery int, shape ...int) *Tensor {
	special := []float32{0, float32(math.Copysign(0, -1)), 1, -1, 2, 2, float32(math.Inf(1)), float32(math.Inf(-1))}
	x := New(Float32, shape...)
	for i := range x.Float32() {
		switch {
		case nanEvery > 0 && rng.IntN(nanEvery) == 0:
			x.Float32()[i] = float32(math.NaN())
		case rng.IntN(2) == 0:
			x.Float32()[i] = special[rng.IntN(len(special))]
		default:
			x.Float32()[i] = float32(rng.NormFloat64())
		}
	}
	return x
}

// glueSameBits reports the first element where got and want differ in their
// bits. Where sum(i) holds, element i is a sum, and any NaN matches any NaN:
// x86 passes on the first operand's NaN, and neither gcc nor Go keeps the
// operands of a commutative add in source order, so a NaN sum's sign and
// payload belong to neither loop's contract. Copies (maxima, transposes)
// keep their exact bits.
func glueSameBits(t *testing.T, what string, got, want []float32, sum func(i int) bool) {
	t.Helper()
	for i := range want {
		g, w := got[i], want[i]
		if math.Float32bits(g) != math.Float32bits(w) && !(sum(i) && g != g && w != w) {
			t.Errorf("%s[%d] = %v (%#x), the Go loop gives %v (%#x)", what, i, g, math.Float32bits(g),
				w, math.Float32bits(w))
			return
		}
	}
}

func noSums(int) bool  { return false }
func allSums(int) bool { return true }

// glueSameIndices reports the first index that differs.
func glueSameIndices(t *testing.T, what string, got, want []int32) {
	t.Helper()
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%s[%d] = %d, the Go loop gives %d", what, i, got[i], want[i])
			return
		}
	}
}

func TestChannelPoolCMatchesGoLoop(t *testing.T) {
	glueAtEveryISALevel(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(41, 42))
		for _, hw := range []int{1, 7, 8, 15, 16, 17, 49, 1024} {
			for _, c := range []int{1, 2, 3, 32} {
				for n := 1; n <= 3; n++ {
					for _, nanEvery := range []int{0, 13} {
						checkChannelPool(t, rng, n, c, hw, nanEvery)
					}
				}
			}
		}
	})
}

// checkChannelPool runs both passes through ChannelPoolForward/Backward (C
// for float32 where built) and through the Go loops on the same data.
func checkChannelPool(t *testing.T, rng *rand.Rand, n, c, hw, nanEvery int) {
	t.Helper()
	x := glueFloats(rng, nanEvery, n, c, 1, hw)
	dout := glueFloats(rng, 0, n, 2, 1, hw)
	out, am := New(Float32, n, 2, 1, hw), make([]int32, n*hw)
	if err := ChannelPoolForward(out, am, x); err != nil {
		t.Fatal(err)
	}
	wantOut, wantAm := make([]float32, out.Len()), make([]int32, len(am))
	channelPoolForward(wantOut, wantAm, x.Float32(), n, c, hw)
	shape := []int{n, c, hw, nanEvery} // n, c, hw, one NaN in about nanEvery
	meanChannel := func(i int) bool { return i%(2*hw) < hw }
	glueSameBits(t, fmt.Sprint("ChannelPoolForward out ", shape), out.Float32(), wantOut, meanChannel)
	glueSameIndices(t, fmt.Sprint("ChannelPoolForward argmax ", shape), am, wantAm)

	dx := New(Float32, n, c, 1, hw)
	if err := ChannelPoolBackward(dx, dout, wantAm); err != nil {
		t.Fatal(err)
	}
	wantDx := make([]float32, dx.Len())
	channelPoolBackward(wantDx, dout.Float32(), wantAm, n, c, hw)
	glueSameBits(t, fmt.Sprint("ChannelPoolBackward dx ", shape), dx.Float32(), wantDx, allSums)
}

func TestGlobalMaxCMatchesGoLoop(t *testing.T) {
	glueAtEveryISALevel(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(43, 44))
		for _, hw := range []int{1, 7, 8, 15, 16, 17, 31, 32, 33, 49, 1024} {
			for _, planes := range []int{1, 2, 5} {
				for _, nanEvery := range []int{0, 2 * hw, 3} {
					x := glueFloats(rng, nanEvery, 1, planes, 1, hw)
					out, am := New(Float32, 1, planes), make([]int32, planes)
					if err := GlobalMaxPoolForward(out, am, x); err != nil {
						t.Fatal(err)
					}
					wantOut, wantAm := make([]float32, planes), make([]int32, planes)
					globalMaxForward(wantOut, wantAm, x.Float32(), hw)
					shape := []int{planes, hw, nanEvery}
					glueSameBits(t, fmt.Sprint("GlobalMaxPoolForward out ", shape), out.Float32(), wantOut, noSums)
					glueSameIndices(t, fmt.Sprint("GlobalMaxPoolForward argmax ", shape), am, wantAm)
				}
			}
		}
	})
}

func TestTranspose12CMatchesGoLoop(t *testing.T) {
	glueAtEveryISALevel(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(45, 46))
		sizes := []int{1, 7, 8, 9, 16, 17, 33}
		var shapes [][3]int
		for _, a := range sizes {
			for _, b := range sizes {
				for n := 1; n <= 3; n++ {
					shapes = append(shapes, [3]int{n, a, b})
				}
			}
		}
		// Large enough to split the samples over the workers.
		shapes = append(shapes, [3]int{5, 65, 129}, [3]int{2, 128, 130})
		for _, s := range shapes {
			n, a, b := s[0], s[1], s[2]
			x := glueFloats(rng, 11, n, a, b)
			out, want := New(Float32, n, b, a), New(Float32, n, b, a)
			if err := Transpose12(out, x); err != nil {
				t.Fatal(err)
			}
			transpose12(want.Float32(), x.Float32(), n, a, b)
			glueSameBits(t, fmt.Sprint("Transpose12 ", s), out.Float32(), want.Float32(), noSums)
		}
	})
}

// The gates' fused input gradients: C against the Go loops at every level,
// on planes around the vector widths, specials and NaNs in the gradient, dx
// apart from dout and over it.
func TestGateBackwardsCMatchGoLoops(t *testing.T) {
	glueAtEveryISALevel(t, func(t *testing.T) {
		rng := rand.New(rand.NewPCG(47, 48))
		for _, hw := range []int{1, 7, 8, 15, 16, 17, 49, 1024} {
			for _, c := range []int{1, 3, 32} {
				for _, n := range []int{1, 2} {
					checkChannelGate(t, rng, n, c, hw)
					checkSpatialGate(t, rng, n, c, hw)
				}
			}
		}
	})
}

func checkChannelGate(t *testing.T, rng *rand.Rand, n, c, hw int) {
	t.Helper()
	dout := glueFloats(rng, 11, n, c, 1, hw)
	scale, dAvg, dMax := glueFloats(rng, 0, n, c), glueFloats(rng, 0, n, c), glueFloats(rng, 0, n, c)
	am := make([]int32, n*c)
	for p := range am {
		am[p] = int32(rng.IntN(hw))
	}
	want := make([]float32, dout.Len())
	channelGateBackward(want, dout.Float32(), scale.Float32(), dAvg.Float32(), dMax.Float32(), am, hw)
	dx, over := New(Float32, n, c, 1, hw), dout.Clone()
	if err := ChannelGateBackward(dx, dout, scale, dAvg, dMax, am); err != nil {
		t.Fatal(err)
	}
	if err := ChannelGateBackward(over, over, scale, dAvg, dMax, am); err != nil {
		t.Fatal(err)
	}
	glueSameBits(t, fmt.Sprint("ChannelGateBackward ", []int{n, c, hw}), dx.Float32(), want, allSums)
	glueSameBits(t, fmt.Sprint("ChannelGateBackward over dout ", []int{n, c, hw}), over.Float32(), want, allSums)
}

func checkSpatialGate(t *testing.T, rng *rand.Rand, n, c, hw int) {
	t.Helper()
	dout := glueFloats(rng, 11, n, c, 1, hw)
	att, dPooled := glueFloats(rng, 0, n, 1, 1, hw), glueFloats(rng, 0, n, 2, 1, hw)
	am := make([]int32, n*hw)
	for p := range am {
		am[p] = int32(rng.IntN(c))
	}
	want := make([]float32, dout.Len())
	spatialGateBackward(want, dout.Float32(), att.Float32(), dPooled.Float32(), am, n, c, hw)
	dx, over := New(Float32, n, c, 1, hw), dout.Clone()
	if err := SpatialGateBackward(dx, dout, att, dPooled, am); err != nil {
		t.Fatal(err)
	}
	if err := SpatialGateBackward(over, over, att, dPooled, am); err != nil {
		t.Fatal(err)
	}
	glueSameBits(t, fmt.Sprint("SpatialGateBackward ", []int{n, c, hw}), dx.Float32(), want, allSums)
	glueSameBits(t, fmt.Sprint("SpatialGateBackward over dout ", []int{n, c, hw}), over.Float32(), want, allSums)
}
