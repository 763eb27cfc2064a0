package engine_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// The rounding rule, value by value: nearest even (ties both ways), a carry
// into the exponent and to infinity, zeros and denormals to a signed zero,
// infinities kept, NaNs quieted with their sign and upper payload.
func TestToBF16Rounding(t *testing.T) {
	for _, c := range []struct {
		in   uint32
		want engine.Bfloat16
	}{
		{0x3f800000, 0x3f80}, // 1
		{0x3f808000, 0x3f80}, // 1 + 2⁻⁸: a tie, to the even 1
		{0x3f818000, 0x3f82}, // a tie above an odd mantissa: up
		{0x3f808001, 0x3f81}, // just above the tie: up
		{0x3f807fff, 0x3f80}, // just below: down
		{0xbf818000, 0xbf82}, // negative ties alike
		{0x3fffffff, 0x4000}, // the carry moves the exponent
		{0x7f7fffff, 0x7f80}, // the largest float rounds to +Inf
		{0xff7fffff, 0xff80},
		{0x7f800000, 0x7f80}, // ±Inf
		{0xff800000, 0xff80},
		{0x00000000, 0x0000}, // ±0
		{0x80000000, 0x8000},
		{0x00000001, 0x0000}, // denormals to a zero of their sign
		{0x807fffff, 0x8000},
		{0x00800000, 0x0080}, // the smallest normal stays
		{0x7fc00000, 0x7fc0}, // quiet NaN
		{0x7f800001, 0x7fc0}, // signalling NaN, payload in the low half: quieted
		{0xffa12345, 0xffe1}, // payload's upper bits and sign kept
	} {
		got := engine.ToBF16(math.Float32frombits(c.in))
		if got != c.want {
			t.Errorf("ToBF16(%#08x) = %#04x, want %#04x", c.in, got, c.want)
		}
		one := []engine.Bfloat16{0}
		opsMust(t, engine.ToBF16Slice(one, []float32{math.Float32frombits(c.in)}))
		if one[0] != c.want {
			t.Errorf("ToBF16Slice(%#08x) = %#04x, want %#04x", c.in, one[0], c.want)
		}
	}
}

// The slice conversions (the AVX512_BF16 instruction where the CPU has it,
// the C loop at every ISA level) give ToBF16's bits on every upper half with
// the lower halves around the tie, and on random floats; widening is exact.
func TestBF16SlicesMatchToBF16(t *testing.T) {
	defer restoreISA(t)()
	var src []float32
	for hi := uint32(0); hi < 1<<16; hi++ {
		for _, lo := range []uint32{0, 1, 0x7fff, 0x8000, 0x8001, 0xffff} {
			src = append(src, math.Float32frombits(hi<<16|lo))
		}
	}
	rng := rand.New(rand.NewPCG(8, 9))
	for range 100003 { // odd: a ragged tail for the 16-wide loop
		src = append(src, math.Float32frombits(rng.Uint32()))
	}
	want := make([]engine.Bfloat16, len(src))
	for i, f := range src {
		want[i] = engine.ToBF16(f)
	}
	for _, level := range engine.CPUISAs() {
		opsMust(t, engine.SetCPUISA(level))
		got := make([]engine.Bfloat16, len(src))
		opsMust(t, engine.ToBF16Slice(got, src))
		bad := 0
		for i := range got {
			if got[i] != want[i] {
				if bad++; bad <= 5 {
					t.Errorf("%s (hardware bf16 %v): %#08x gives %#04x, want %#04x", level, engine.CPUHasBF16(),
						math.Float32bits(src[i]), got[i], want[i])
				}
			}
		}
		back := make([]float32, len(got))
		opsMust(t, engine.BF16ToFloat32Slice(back, got))
		for i, f := range back {
			if math.Float32bits(f) != uint32(got[i])<<16 {
				t.Fatalf("%s: widening %#04x gave %#08x", level, got[i], math.Float32bits(f))
			}
		}
	}
	if err := engine.ToBF16Slice(make([]engine.Bfloat16, 2), make([]float32, 3)); err == nil {
		t.Error("ToBF16Slice took slices of different lengths")
	}
	t.Logf("hardware bf16 conversion at avx512: %v", engine.CPUHasBF16())
}
