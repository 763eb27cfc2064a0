package engine_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// The GPU rounds to bf16 with exactly engine.ToBF16's bits (issue 13's one
// rounding rule for every path): ties to even either way, carries into the
// exponent and to infinity, zeros and denormals of both signs, infinities,
// NaNs with payloads in both halves, and random bit patterns.
func TestCUDARoundBF16BitExact(t *testing.T) {
	cudaOrSkip(t)
	bits := []uint32{0, 0x80000000, 1, 0x807fffff, 0x00800000, 0x3f808000, 0x3f818000, 0x3f808001, 0x3f80ffff,
		0x7f7fffff, 0xff7f8000, 0x7f800000, 0xff800000, 0x7fc00000, 0x7f800001, 0xff810000, 0x7fbfffff, 0x7fff0001}
	rng := rand.New(rand.NewPCG(61, 62))
	for range 4096 {
		bits = append(bits, rng.Uint32())
	}
	xs, want := make([]float32, len(bits)), make([]uint32, len(bits))
	for i, b := range bits {
		xs[i] = math.Float32frombits(b)
		want[i] = math.Float32bits(engine.ToBF16(xs[i]).Float32())
	}
	x, err := engine.FromFloat32(xs, len(xs))
	opsMust(t, err)
	dx := dev(t, x)
	dy := dev(t, engine.New(engine.Float32, len(bits)))
	opsMust(t, engine.RoundBF16(dy, dx))
	got := toHost(t, dy)
	cpu := engine.New(engine.Float32, len(bits))
	opsMust(t, engine.RoundBF16(cpu, x))
	for i := range bits {
		g := math.Float32bits(float32(got.At(i)))
		if g != want[i] {
			t.Fatalf("round_bf16_f32(%#08x) = %#08x, ToBF16 gives %#08x", bits[i], g, want[i])
		}
		if c := math.Float32bits(float32(cpu.At(i))); c != want[i] {
			t.Fatalf("RoundBF16 on the CPU (%#08x) = %#08x, ToBF16 gives %#08x", bits[i], c, want[i])
		}
	}
	// Booked with the other kernels (every element above matched exactly).
	checkKernels(t, []string{"round_bf16_f32"}, "RoundBF16 bits", dy, got, 0, 0)
}
