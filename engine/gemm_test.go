package engine

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// The matrix product's reference is gemmGo in float64 (gemm.go). The float32
// C kernel (each plan, and its portable C path) and, without cgo on amd64,
// gemmGo in float32 are held to it here; there is no gemm_ref_test.go: the
// awkward sizes (tiny, ragged, the blocking boundaries, padded rows) are
// randomGemmCases'.

// gemmCase is one product: shapes, layouts, scalars and extra stride padding.
type gemmCase struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	padA, padB     int // extra elements per row beyond the stored width
	padC           int
}

func (g gemmCase) String() string {
	return fmt.Sprintf("tA=%v tB=%v m=%d n=%d k=%d alpha=%v beta=%v pad=%d,%d,%d",
		g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.beta, g.padA, g.padB, g.padC)
}

// gemmOperands holds random float32 inputs in their stored layouts plus the
// float64 reference result and a bound on its rounding error.
type gemmOperands struct {
	g             gemmCase
	a, b, c0      []float32
	lda, ldb, ldc int
	want, bound   []float64
}

func newGemmOperands(rng *rand.Rand, g gemmCase) *gemmOperands {
	o := &gemmOperands{g: g}
	ar, ac := g.m, g.k
	if g.transA {
		ar, ac = g.k, g.m
	}
	br, bc := g.k, g.n
	if g.transB {
		br, bc = g.n, g.k
	}
	o.lda, o.ldb, o.ldc = ac+g.padA, bc+g.padB, g.n+g.padC
	fill := func(rows, cols, ld int) []float32 {
		s := make([]float32, max(rows*ld, 1))
		for i := range s {
			s[i] = float32(rng.Float64()*2 - 1)
		}
		return s
	}
	o.a, o.b, o.c0 = fill(ar, ac, o.lda), fill(br, bc, o.ldb), fill(g.m, g.n, o.ldc)
	if g.beta == 0 { // C must be overwritten without being read
		for i := range o.c0 {
			o.c0[i] = float32(math.NaN())
		}
	}
	f64 := func(s []float32, abs bool) []float64 {
		d := make([]float64, len(s))
		for i, v := range s {
			d[i] = float64(v)
			if abs {
				d[i] = math.Abs(d[i])
			}
		}
		return d
	}
	o.want = f64(o.c0, false)
	gemmGo(g.transA, g.transB, g.m, g.n, g.k, float64(g.alpha), f64(o.a, false), o.lda, f64(o.b, false), o.ldb,
		float64(g.beta), o.want, o.ldc)
	// |alpha|·|A|·|B| + |beta|·|C| bounds the size of every rounding step.
	o.bound = f64(o.c0, true)
	gemmGo(g.transA, g.transB, g.m, g.n, g.k, math.Abs(float64(g.alpha)), f64(o.a, true), o.lda, f64(o.b, true), o.ldb,
		math.Abs(float64(g.beta)), o.bound, o.ldc)
	return o
}

// check compares c with the reference: every element within
// (k+4)·2⁻²³·bound, padding between rows untouched.
func (o *gemmOperands) check(t *testing.T, what string, c []float32) {
	t.Helper()
	g := o.g
	worst, wi, wj := 0.0, 0, 0
	for i := 0; i < g.m; i++ {
		for j := 0; j < o.ldc; j++ {
			got := float64(c[i*o.ldc+j])
			if j >= g.n {
				if math.Float32bits(c[i*o.ldc+j]) != math.Float32bits(o.c0[i*o.ldc+j]) {
					t.Fatalf("%s %v: padding c[%d,%d] changed", what, g, i, j)
				}
				continue
			}
			if math.IsNaN(got) || math.IsInf(got, 0) {
				t.Fatalf("%s %v: c[%d,%d] = %v", what, g, i, j, got)
			}
			tol := float64(g.k+4) * 0x1p-23 * (o.bound[i*o.ldc+j] + 1e-30)
			if e := math.Abs(got-o.want[i*o.ldc+j]) / tol; e > worst {
				worst, wi, wj = e, i, j
			}
		}
	}
	if worst > 1 {
		t.Fatalf("%s %v: c[%d,%d] = %v, want %v (error %.2f× tolerance)", what, g, wi, wj,
			c[wi*o.ldc+wj], o.want[wi*o.ldc+wj], worst)
	}
}

func (o *gemmOperands) run(f func(c []float32)) []float32 {
	c := append([]float32(nil), o.c0...)
	f(c)
	return c
}

func (o *gemmOperands) sgemm(c []float32) {
	g := o.g
	sgemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, o.a, o.lda, o.b, o.ldb, g.beta, c, o.ldc)
}

// randomGemmCases mixes tiny, ragged and blocking-boundary shapes with every
// transpose combination and scalar variant.
func randomGemmCases(rng *rand.Rand, count int) []gemmCase {
	dims := []int{1, 2, 3, 5, 6, 7, 8, 9, 13, 15, 16, 17, 23, 31, 32, 33, 48, 63, 65, 97, 145, 150, 257, 300}
	alphas := []float32{1, 0.5, -2}
	betas := []float32{0, 1, 0.75, -1}
	var cs []gemmCase
	for len(cs) < count {
		g := gemmCase{
			transA: rng.IntN(2) == 1, transB: rng.IntN(2) == 1,
			m: dims[rng.IntN(len(dims))], n: dims[rng.IntN(len(dims))], k: dims[rng.IntN(len(dims))],
			alpha: alphas[rng.IntN(len(alphas))], beta: betas[rng.IntN(len(betas))],
		}
		if g.m*g.n*g.k > 3e6 {
			continue
		}
		if rng.IntN(3) == 0 {
			g.padA, g.padB, g.padC = rng.IntN(5), rng.IntN(5), rng.IntN(5)
		}
		cs = append(cs, g)
	}
	// Blocking boundaries (KC = 256 along k, MC = 144 rows, NC = 4096
	// columns) and the thread splits (along N, along M, along K).
	for _, tt := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
		for _, s := range [][3]int{{1, 1, 1}, {1, 1, 600}, {145, 7, 513}, {3, 4100, 5}, {2, 4097, 260},
			{200, 40, 100}, {7, 100, 3000}, {6, 9, 2000}, {64, 120, 400}, {16, 100, 150}} {
			cs = append(cs, gemmCase{transA: tt[0], transB: tt[1], m: s[0], n: s[1], k: s[2],
				alpha: 1, beta: betas[rng.IntN(len(betas))], padA: 1, padB: 2, padC: 3})
		}
	}
	return cs
}

func TestSgemmMatchesFloat64Reference(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, g := range randomGemmCases(rng, 250) {
		o := newGemmOperands(rng, g)
		o.check(t, "sgemm", o.run(o.sgemm))
		o.check(t, "gemm[float32]", o.run(func(c []float32) {
			gemm(g.transA, g.transB, g.m, g.n, g.k, g.alpha, o.a, o.lda, o.b, o.ldb, g.beta, c, o.ldc)
		}))
	}
}

// Each algorithm of the AVX2 kernel (normally picked by shape) must be
// correct on every shape, and packing must change no bit: the planner picks
// it per thread's part of a product (columns_plan), and a result may not
// depend on the thread count.
func TestSgemmPackingVariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	for _, g := range randomGemmCases(rng, 60) {
		o := newGemmOperands(rng, g)
		var unpacked []float32
		for _, plan := range sgemmPlans {
			c := o.run(func(c []float32) {
				sgemmForced(plan, g.transA, g.transB, g.m, g.n, g.k, g.alpha, o.a, o.lda, o.b, o.ldb, g.beta, c, o.ldc)
			})
			o.check(t, fmt.Sprintf("plan %d", plan), c)
			if plan == 0 {
				unpacked = c
			} else if plan&sgemmPlanDot == 0 {
				sameBits(t, fmt.Sprintf("%+v: plan %d against plan 0", g, plan), len(c), c, unpacked)
			}
		}
	}
}

// A long reduction into a small C (a weight gradient over a plane of more
// than 64×64) runs in k slices of DOT_KC = 4096: each slice after the
// first adds to what the ones before it left, whatever beta.
func TestSgemmDotPathPastOneKSlice(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	for _, beta := range []float32{0, 0.5, 1} {
		for _, k := range []int{4097, 9000} {
			g := gemmCase{transB: true, m: 3, n: 4, k: k, alpha: 1, beta: beta}
			o := newGemmOperands(rng, g)
			o.check(t, "sgemm", o.run(o.sgemm))
		}
	}
}

func TestSgemmPortablePath(t *testing.T) {
	defer forceISA(t, "generic")()
	rng := rand.New(rand.NewPCG(9, 9))
	for _, g := range randomGemmCases(rng, 60) {
		o := newGemmOperands(rng, g)
		o.check(t, "portable", o.run(o.sgemm))
	}
}

func TestSgemmZeroSizes(t *testing.T) {
	c := []float32{1, 2, 3, 4}
	sgemm(false, false, 0, 2, 3, 1, nil, 3, make([]float32, 6), 2, 0, c, 2)
	sgemm(false, false, 2, 0, 3, 1, make([]float32, 6), 3, nil, 1, 0, c, 2)
	if c[0] != 1 || c[3] != 4 {
		t.Fatalf("empty product touched C: %v", c)
	}
	sgemm(false, false, 2, 2, 0, 1, nil, 1, nil, 2, 0.5, c, 2) // k = 0: C = beta·C
	if c[0] != 0.5 || c[3] != 2 {
		t.Fatalf("k=0, beta=0.5: got %v", c)
	}
	c[0] = float32(math.NaN())
	sgemm(true, true, 2, 2, 0, 1, nil, 2, nil, 1, 0, c, 2)
	if c[0] != 0 || c[3] != 0 {
		t.Fatalf("k=0, beta=0: got %v", c)
	}
}

func TestSgemmRejectsShortSlices(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("short A did not panic")
		}
	}()
	sgemm(false, false, 4, 4, 4, 1, make([]float32, 15), 4, make([]float32, 16), 4, 0, make([]float32, 16), 4)
}

// withThreads runs f with the pool set to n threads, then restores it.
func withThreads(n int, f func()) {
	old := Threads()
	SetThreads(n)
	defer SetThreads(old)
	f()
}

// The same inputs give bit-identical results call after call; splits along
// N or M give the same bits for any thread count, since each element is the
// same chain of FMAs wherever its tile lands. (Without cgo there is no
// split.)
func TestSgemmDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	shapes := []struct {
		gemmCase
		split int // with two threads
	}{
		{gemmCase{m: 300, n: 301, k: 290, alpha: 1, beta: 0.5}, splitN},
		{gemmCase{m: 400, n: 20, k: 200, transB: true, alpha: 1, beta: 0}, splitM},
		{gemmCase{m: 6, n: 25, k: 8000, transB: true, alpha: 1, beta: 1}, splitK},       // dot products
		{gemmCase{m: 6, n: 9, k: 20000, alpha: 1, beta: 0.5}, splitK},                   // packed
		{gemmCase{m: 64, n: 120, k: 400, transB: true, alpha: 1, beta: 0}, splitN},      // LeNet fc1
		{gemmCase{m: 120, n: 400, k: 64, transA: true, alpha: 1, beta: 1}, splitN},      // its dW
		{gemmCase{m: 6, n: 784 * 16, k: 25, alpha: 1, beta: 0}, splitN},                 // conv1
		{gemmCase{m: 33, n: 47, k: 700, transA: true, transB: true, alpha: -1}, splitM}, // ragged
		{gemmCase{m: 16, n: 100, k: 150, alpha: 1}, splitNone},
		// taller than wide: each part packs its rows of A and all of B
		{gemmCase{m: 3136, n: 256, k: 128, transB: true, alpha: 1, beta: 0}, splitM}, // gMLP proj_in
		{gemmCase{m: 256, n: 128, k: 3136, transA: true, alpha: 1, beta: 1}, splitM}, // its dW
		{gemmCase{m: 130, n: 40, k: 110, alpha: 1, beta: 0.5}, splitM},               // ragged rows
		// mlp's fc1: each part reads A unpacked at AVX-512 (columns_plan)
		{gemmCase{m: 128, n: 256, k: 3072, transB: true, alpha: 1, beta: 0}, splitN},
		// a part alone would be planned as dot products: it may not be
		{gemmCase{m: 40, n: 200, k: 3000, transB: true, alpha: 1, beta: 0}, splitN},
	}
	bits := func(c []float32) []uint32 {
		u := make([]uint32, len(c))
		for i, v := range c {
			u[i] = math.Float32bits(v)
		}
		return u
	}
	same := func(x, y []uint32) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	for _, s := range shapes {
		withThreads(2, func() {
			if got := sgemmSplitOf(s.transA, s.transB, s.m, s.n, s.k); sgemmInC && got != s.split {
				t.Errorf("%v: split %d with two threads, want %d", s.gemmCase, got, s.split)
			}
		})
		o := newGemmOperands(rng, s.gemmCase)
		var ref []uint32
		for _, threads := range []int{1, 2, 3} {
			var first, second []uint32
			withThreads(threads, func() {
				first, second = bits(o.run(o.sgemm)), bits(o.run(o.sgemm))
			})
			if !same(first, second) {
				t.Fatalf("%v, %d threads: two runs differ", s.gemmCase, threads)
			}
			if ref == nil {
				ref = first
			} else if s.split != splitK && !same(ref, first) {
				t.Fatalf("%v: %d threads differ from 1 thread", s.gemmCase, threads)
			}
			o.check(t, fmt.Sprintf("%d threads", threads), o.run(o.sgemm))
		}
	}
}

func TestSgemmDoesNotAllocate(t *testing.T) {
	for _, g := range []gemmCase{
		{m: 16, n: 100, k: 150, alpha: 1},                       // one thread
		{m: 256, n: 256, k: 256, alpha: 1, beta: 1},             // split N
		{m: 400, n: 20, k: 100, transB: true, alpha: 1},         // split M
		{m: 6, n: 25, k: 6000, transB: true, alpha: 1, beta: 1}, // split K, scratch
	} {
		o := newGemmOperands(rand.New(rand.NewPCG(11, 11)), g)
		c := append([]float32(nil), o.c0...)
		o.sgemm(c)
		if n := testing.AllocsPerRun(20, func() { o.sgemm(c) }); n != 0 {
			t.Fatalf("%v: %v allocations per call", g, n)
		}
	}
}

// Concurrent callers share the thread pool (one at a time; the others run
// their parts in turn on their own thread) and still get the same bits.
func TestSgemmConcurrentCallers(t *testing.T) {
	o := newGemmOperands(rand.New(rand.NewPCG(12, 12)), gemmCase{m: 200, n: 180, k: 170, alpha: 1, beta: 0.5})
	want := o.run(o.sgemm)
	errs := make(chan string, 8)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 10; i++ {
				got := o.run(o.sgemm)
				for j := range got {
					if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
						errs <- fmt.Sprintf("element %d: %v, want %v", j, got[j], want[j])
						return
					}
				}
			}
			errs <- ""
		}()
	}
	for g := 0; g < 4; g++ {
		if e := <-errs; e != "" {
			t.Fatal(e)
		}
	}
}

// The GEMM at every ISA level this CPU runs (the AVX2 kernels, or the
// portable loop) against the float64 reference.
func TestSgemmAtEveryISALevel(t *testing.T) {
	for _, level := range CPUISAs() {
		t.Run(level, func(t *testing.T) {
			defer forceISA(t, level)()
			TestSgemmMatchesFloat64Reference(t)
		})
	}
}

// forceISA sets the ISA level in use and returns a func that restores it.
func forceISA(t *testing.T, level string) func() {
	was := CPUISA()
	if err := SetCPUISA(level); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := SetCPUISA(was); err != nil {
			t.Error(err)
		}
	}
}

// The AVX-512 6×32 tiles do each element's arithmetic as the AVX2 6×16
// ones do: the two levels give the same bits, on shapes that take the
// packed path with full and ragged tiles, and on random ones.
func TestSgemmAVX512GivesTheAVX2Bits(t *testing.T) {
	if !slices.Contains(CPUISAs(), "avx512") {
		t.Skip("skipped: this CPU has no AVX-512")
	}
	rng := rand.New(rand.NewPCG(5, 12))
	cases := append(randomGemmCases(rng, 60),
		gemmCase{m: 150, n: 257, k: 300, alpha: 1, beta: 0}, gemmCase{m: 97, n: 65, k: 33, alpha: 0.5, beta: 0.75},
		gemmCase{transA: true, transB: true, m: 145, n: 96, k: 257, alpha: -2, beta: 1})
	for _, g := range cases {
		o := newGemmOperands(rng, g)
		restore := forceISA(t, "avx2")
		want := o.run(o.sgemm)
		restore()
		restore = forceISA(t, "avx512")
		got := o.run(o.sgemm)
		restore()
		if !slices.EqualFunc(got, want, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) }) {
			t.Errorf("%+v: AVX-512 and AVX2 results differ", g) // bits: the padding holds NaNs
		}
	}
}

// gemmBiasAt adds the bias as its own rounding after the product, wherever
// the product adds it (block by block, after a K split's sum, or after the
// whole product): the bits of gemmAt then addRowBias, on every split, plan
// width and level, in float32 and (where the CPU has it) bf16 with and
// without AMX.
func TestGemmBiasAtIsProductThenBias(t *testing.T) {
	defer func(was string) { _ = SetCPUISA(was) }(CPUISA())
	shapes := []struct {
		transA, transB bool
		m, n, k        int
	}{
		{false, true, 7, 33, 19},    // one thread
		{false, true, 300, 40, 64},  // split along M
		{false, true, 64, 300, 64},  // split along N
		{false, true, 5, 10, 20000}, // split along K (dot products)
		{false, true, 400, 96, 64},  // at AVX-512, A unpacked: blocks of rows for the bias
		{false, true, 333, 257, 301},
		{true, false, 150, 70, 90},
		{false, false, 97, 131, 600}, // more than one K block
		{false, true, 4200, 160, 64}, // bf16 on AMX: C written past the caches, the edge rows not
	}
	rng := rand.New(rand.NewPCG(61, 62))
	for _, level := range CPUISAs() {
		if err := SetCPUISA(level); err != nil {
			t.Fatal(err)
		}
		precs := []Precision{FP32}
		if CPUHasBF16() { // at this level
			precs = append(precs, BF16)
		}
		for _, s := range shapes {
			a := randFloats(rng, s.m*s.k)
			b := randFloats(rng, s.k*s.n)
			bias := randFloats(rng, s.n)
			lda, ldb := s.k, s.n
			if s.transA {
				lda = s.m
			}
			if s.transB {
				ldb = s.k
			}
			for _, prec := range precs {
				for _, amx := range []bool{true, false} {
					if prec == FP32 && !amx {
						continue
					}
					useAMX(amx)
					want, got := make([]float32, s.m*s.n), make([]float32, s.m*s.n)
					gemmAt(prec, false, s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, b, ldb, 0, want, s.n)
					addRowBias(want, bias, s.m, s.n)
					gemmBiasAt(prec, s.transA, s.transB, s.m, s.n, s.k, 1, a, lda, b, ldb, 0, got, s.n, bias)
					if !slices.Equal(got, want) {
						t.Errorf("%s %v amx=%v %+v: product with bias differs from product then bias", level, prec, amx, s)
					}
				}
			}
			useAMX(true)
		}
	}
}

func randFloats(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}
