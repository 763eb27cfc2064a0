package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// The float32 element-wise loops of elementwise_cpu.c (Add, Scale, the
// linear layer's bias and bias gradient) against the Go loops written out
// again here, bit for bit, at every ISA level this CPU runs: each element
// gets the same roundings in the same order, so the vector width must not
// show. The lengths straddle the 8- and 16-lane widths.

var elementwiseLens = []int{1, 7, 8, 15, 16, 17, 33, 1000}

// elementwiseRows are linear layers' (n, o): a ragged column tail, one
// column, and a batch whose row sums depend on their order.
var elementwiseRows = [][2]int{{3, 17}, {5, 1}, {64, 120}, {1, 33}, {2, 16}}

// spreadFloats returns n values over many exponents, with signs, zeros and
// subnormals, so that a different order or a fused rounding changes bits.
func spreadFloats(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64() * math.Ldexp(1, rng.IntN(40)-20))
		switch rng.IntN(16) {
		case 0:
			s[i] = 0
		case 1:
			s[i] = float32(math.Copysign(0, -1))
		case 2:
			s[i] = math.Float32frombits(rng.Uint32N(1 << 23)) // subnormal
		}
	}
	return s
}

func TestElementwiseFloat32MatchesGoLoops(t *testing.T) {
	for _, level := range CPUISAs() {
		t.Run(level, func(t *testing.T) {
			defer forceISA(t, level)()
			rng := rand.New(rand.NewPCG(7, 8))
			for _, n := range elementwiseLens {
				checkAdd(t, rng, n)
				checkScale(t, rng, n)
			}
			for _, no := range elementwiseRows {
				checkRowBias(t, rng, no[0], no[1])
				checkRowSums(t, rng, no[0], no[1])
			}
		})
	}
}

// checkAdd runs addSlices with out apart from a and b, out = a, out = b,
// out = a = b, and out one element after and before a in one buffer (Go's
// loop then carries sums forward, or not).
func checkAdd(t *testing.T, rng *rand.Rand, n int) {
	t.Helper()
	a, b := spreadFloats(rng, n), spreadFloats(rng, n)
	want, twice := make([]float32, n), make([]float32, n)
	for i := range a {
		want[i], twice[i] = a[i]+b[i], a[i]+a[i]
	}
	out := make([]float32, n)
	addSlices(out, a, b)
	sameBits(t, "add", n, out, want)
	out = slices.Clone(a)
	addSlices(out, out, b)
	sameBits(t, "add (out = a)", n, out, want)
	out = slices.Clone(b)
	addSlices(out, a, out)
	sameBits(t, "add (out = b)", n, out, want)
	out = slices.Clone(a)
	addSlices(out, out, out)
	sameBits(t, "add (out = a = b)", n, out, twice)
	for _, shift := range []int{1, -1} {
		buf := spreadFloats(rng, n+1)
		at, oat := max(-shift, 0), max(shift, 0) // a's and out's starts
		want := slices.Clone(buf)
		for i := range n {
			want[oat+i] = want[at+i] + b[i]
		}
		addSlices(buf[oat:oat+n], buf[at:at+n], b)
		sameBits(t, fmt.Sprintf("add (out = a shifted %d)", shift), n, buf, want)
	}
}

func checkScale(t *testing.T, rng *rand.Rand, n int) {
	t.Helper()
	x := New(Float32, n)
	copy(x.Float32(), spreadFloats(rng, n))
	const s = 0.1 // not a power of two: every product rounds
	want := slices.Clone(x.Float32())
	for i := range want {
		want[i] *= float32(s)
	}
	if err := Scale(x, s); err != nil {
		t.Fatal(err)
	}
	sameBits(t, "scale", n, x.Float32(), want)
}

func checkRowBias(t *testing.T, rng *rand.Rand, n, o int) {
	t.Helper()
	out, b := spreadFloats(rng, n*o), spreadFloats(rng, o)
	want := slices.Clone(out)
	for i := range n {
		for j := range o {
			want[i*o+j] += b[j]
		}
	}
	addRowBias(out, b, n, o)
	sameBits(t, "row bias", n*o, out, want)
}

// checkRowSums starts db away from zero: the bias gradient accumulates.
func checkRowSums(t *testing.T, rng *rand.Rand, n, o int) {
	t.Helper()
	db, dout := spreadFloats(rng, o), spreadFloats(rng, n*o)
	want := slices.Clone(db)
	for i := range n {
		for j := range o {
			want[j] += dout[i*o+j]
		}
	}
	sumRows(db, dout, n, o)
	sameBits(t, "row sums", n*o, db, want)
}

// sameBits reports the first element whose bits differ.
func sameBits(t *testing.T, what string, size int, got, want []float32) {
	t.Helper()
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Errorf("%s, %d elements: [%d] = %g, want %g", what, size, i, got[i], want[i])
			return
		}
	}
}
