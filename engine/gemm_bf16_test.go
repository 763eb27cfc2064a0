package engine

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// The AVX512_BF16 product gives, bit for bit, what its documented
// arithmetic gives (gemm_bf16_cpu.c): A and B rounded by ToBF16, per slice
// of 256 values of k pairs added in order, the product at 2p+1 then at 2p,
// each add rounded in float32, then alpha·acc + beta·c. The AMX product,
// where the CPU has it, is held to the float64 product of the rounded
// operands within float32 accumulation's bound, and to its own bits on a
// second run. All four transpose cases, edges of the
// 6×32 tile, odd k, k past one slice, and splits over the threads by
// columns and by rows.
func TestSgemmBF16MatchesEmulation(t *testing.T) {
	if !CPUHasBF16() {
		t.Skip("skipped: this CPU has no AVX512_BF16 (or the ISA level in use is below avx512)")
	}
	defer useAMX(true)
	paths := []string{"avx512bf16"}
	if CPUHasAMX() {
		paths = append(paths, "amx")
	}
	for _, path := range paths {
		useAMX(path == "amx")
		t.Run(path, func(t *testing.T) { checkSgemmBF16(t, path == "amx") })
	}
}

// poisonScratch fills the free scratch buffers with all-ones bits, NaN as
// float32 and as bf16 pairs: a packing that leaves words of its panels
// unwritten, which the product then reads, shows in the result.
func poisonScratch() {
	scratch.mu.Lock()
	defer scratch.mu.Unlock()
	for _, b := range scratch.f32 {
		for i := range b[:cap(b)] {
			b[i] = math.Float32frombits(^uint32(0))
		}
	}
}

func checkSgemmBF16(t *testing.T, amx bool) {
	rng := rand.New(rand.NewPCG(12, 13))
	for _, c := range []struct {
		ta, tb      bool
		m, n, k     int
		alpha, beta float32
	}{
		{false, false, 6, 32, 8, 1, 0}, {false, false, 7, 33, 9, 1, 0}, {true, false, 13, 70, 300, 1, 1},
		{false, true, 64, 128, 64, 1, 0}, {true, true, 5, 31, 1, 1, 1}, {false, false, 150, 300, 513, 1, 0},
		{false, true, 128, 256, 3072, 1, 0}, {true, false, 64, 64, 129, 2, 0}, {false, false, 1, 1, 2, 1, 1},
		{false, true, 300, 40, 200, 1, 1}, {true, false, 200, 64, 100, 1, 0}, // split by rows
		{false, true, 13, 45, 67, 1, 0}, // ragged runs through the packing transposes
	} {
		ar, ac := c.m, c.k
		if c.ta {
			ar, ac = c.k, c.m
		}
		br, bc := c.k, c.n
		if c.tb {
			br, bc = c.n, c.k
		}
		a, b := randF32(rng, ar*ac), randF32(rng, br*bc)
		got, want := randF32(rng, c.m*c.n), make([]float32, c.m*c.n)
		copy(want, got)
		poisonScratch()
		if !sgemmBF16(false, c.ta, c.tb, c.m, c.n, c.k, c.alpha, a, ac, b, bc, c.beta, got, c.n) {
			t.Fatal("sgemmBF16 did not run on a CPU with bf16")
		}
		if CPUHasAMX() != amx {
			t.Fatalf("the AMX path is %v, want %v", CPUHasAMX(), amx)
		}
		if amx {
			checkBF16Bound(t, c.ta, c.tb, c.m, c.n, c.k, c.alpha, a, ac, b, bc, c.beta, want, got)
			again := slices.Clone(want)
			sgemmBF16(false, c.ta, c.tb, c.m, c.n, c.k, c.alpha, a, ac, b, bc, c.beta, again, c.n)
			if !slices.Equal(again, got) {
				t.Errorf("%+v: a second run gives other bits", c)
			}
			continue
		}
		emulateSgemmBF16(c.ta, c.tb, c.m, c.n, c.k, c.alpha, a, ac, b, bc, c.beta, want, c.n)
		bad := 0
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				if bad++; bad <= 3 {
					t.Errorf("%+v: c[%d] = %g, the emulation gives %g", c, i, got[i], want[i])
				}
			}
		}
		// And the product is a product: within bf16's rounding of the float64 one.
		if c.alpha == 1 && c.beta == 0 {
			ref := make([]float64, c.m*c.n)
			gemmGo(c.ta, c.tb, c.m, c.n, c.k, 1, f64s(a), ac, f64s(b), bc, 0, ref, c.n)
			for i, r := range ref {
				if d := math.Abs(float64(got[i]) - r); d > 0.02*math.Sqrt(float64(c.k))+1e-6 {
					t.Errorf("%+v: c[%d] = %g, float64 gives %g", c, i, got[i], r)
					break
				}
			}
		}
	}
}

// checkBF16Bound holds an AMX result got (c0 the C it started from) to the
// float64 product of the bf16-rounded operands: within k float32 roundings
// of Σ|a·b| per element (TDPBF16PS's order of additions inside a tile is
// not documented: the bits differ from a sequential float32 sum's).
func checkBF16Bound(t *testing.T, ta, tb bool, m, n, k int, alpha float32, a []float32, lda int, b []float32,
	ldb int, beta float32, c0, got []float32) {
	t.Helper()
	ra, rb := bf16Rounded(a), bf16Rounded(b)
	ref, abs := make([]float64, m*n), make([]float64, m*n)
	gemmGo(ta, tb, m, n, k, 1, ra, lda, rb, ldb, 0, ref, n)
	gemmGo(ta, tb, m, n, k, 1, absAll(ra), lda, absAll(rb), ldb, 0, abs, n)
	for i := range ref {
		want := float64(alpha)*ref[i] + float64(beta)*float64(c0[i])
		tol := float64(k+2)*math.Ldexp(1, -24)*(math.Abs(float64(alpha))*abs[i]+math.Abs(float64(beta*c0[i]))) + 1e-30
		if d := math.Abs(float64(got[i]) - want); d > tol {
			t.Errorf("c[%d] = %g, float64 gives %g (tolerance %g)", i, got[i], want, tol)
			return
		}
	}
}

func bf16Rounded(s []float32) []float64 {
	d := make([]float64, len(s))
	for i, v := range s {
		d[i] = float64(ToBF16(v).Float32())
	}
	return d
}

func absAll(s []float64) []float64 {
	d := make([]float64, len(s))
	for i, v := range s {
		d[i] = math.Abs(v)
	}
	return d
}

// emulateSgemmBF16 is the AVX512_BF16 product's arithmetic written out in
// Go: per pair the product at 2p+1 first (VDPBF16PS's order).
func emulateSgemmBF16(ta, tb bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int,
	beta float32, c []float32, ldc int) {
	at := func(i, q int) float32 {
		if q >= k {
			return 0
		}
		if ta {
			return ToBF16(a[q*lda+i]).Float32()
		}
		return ToBF16(a[i*lda+q]).Float32()
	}
	bt := func(q, j int) float32 {
		if q >= k {
			return 0
		}
		if tb {
			return ToBF16(b[j*ldb+q]).Float32()
		}
		return ToBF16(b[q*ldb+j]).Float32()
	}
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			out := c[i*ldc+j]
			for pc := 0; pc < k; pc += 256 {
				end := min(pc+256, k)
				var acc float32
				for q := pc; q < end; q += 2 {
					odd := float32(0)
					if q+1 < end {
						odd = at(i, q+1) * bt(q+1, j) // exact: two 8-bit mantissas
					}
					acc += odd
					acc += at(i, q) * bt(q, j)
				}
				bet := beta
				if pc > 0 {
					bet = 1
				}
				x := alpha * acc
				if bet != 0 {
					x = float32(math.FMA(float64(bet), float64(out), float64(x))) // exact in float64 here
				}
				out = x
			}
			c[i*ldc+j] = out
		}
	}
}

func randF32(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.Float64()*2 - 1)
	}
	return s
}

func f64s(s []float32) []float64 {
	d := make([]float64, len(s))
	for i, v := range s {
		d[i] = float64(v)
	}
	return d
}
