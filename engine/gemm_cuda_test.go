package engine_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
)

// fp32 products against the CPU gemm: both sum k float32 products in
// different orders (the CPU in blocks of its micro-kernel, the GPU in k order
// per split), so they differ by a few ulp of the partial sums, growing like
// √k. Inputs are in [-1,1), so |C| is about √k/3; the tolerance allows ~8 ulp
// of that per element.
func gemmTol(k int) (atol, rtol float64) {
	return 1e-6 * (1 + math.Sqrt(float64(k))), 1e-5
}

type gemmCase struct {
	m, n, k int
}

// Sizes around and inside the 64 and 128 tiles and the k-step of 8, one,
// and a long k that the automatic plan splits. Kept small: the emulator pays
// a thread switch per thread per k-step.
var gemmCases = []gemmCase{{1, 1, 1}, {17, 33, 5}, {33, 17, 20}, {65, 3, 17}, {130, 66, 9}, {3, 5, 300}}

// gemmKernelName names a product's kernel on a square tile; dt is f32,
// tf32 or bf16.
func gemmKernelName(ta, tb bool, tile int, dt string) string {
	return gemmTileKernelName(ta, tb, tile, tile, dt)
}

// gemmTileKernelName names a product's kernel on a tm×tn tile.
func gemmTileKernelName(ta, tb bool, tm, tn int, dt string) string {
	t := func(v bool) string {
		if v {
			return "t"
		}
		return "n"
	}
	return fmt.Sprintf("gemm_%s%s_%dx%d_%s", t(ta), t(tb), tm, tn, dt)
}

// gemmOperands returns random A, B, C (CPU and GPU) for batch products with
// leading dimensions padded by 3 and the matrices 5 elements apart beyond
// their extent, so strides are exercised.
type gemmOperands struct {
	lda, ldb, ldc, sa, sb, sc int
	a, b, c, da, db, dc       *engine.Tensor
}

func newGemmOperands(t *testing.T, rng *rand.Rand, ta, tb bool, m, n, k, batch int) *gemmOperands {
	o := &gemmOperands{}
	ar, ac := m, k
	if ta {
		ar, ac = k, m
	}
	br, bc := k, n
	if tb {
		br, bc = n, k
	}
	o.lda, o.ldb, o.ldc = ac+3, bc+3, n+3
	o.sa, o.sb, o.sc = ar*o.lda+5, br*o.ldb+5, m*o.ldc+5
	o.a, o.da = devRand(t, rng, batch*o.sa)
	o.b, o.db = devRand(t, rng, batch*o.sb)
	o.c, o.dc = devRand(t, rng, batch*o.sc)
	return o
}

func (o *gemmOperands) run(t *testing.T, ta, tb bool, m, n, k, batch int, alpha, beta float32) {
	t.Helper()
	opsMust(t, engine.GemmForTest(ta, tb, m, n, k, batch, alpha, o.a, o.lda, o.sa, o.b, o.ldb, o.sb, beta, o.c, o.ldc, o.sc))
	opsMust(t, engine.GemmForTest(ta, tb, m, n, k, batch, alpha, o.da, o.lda, o.sa, o.db, o.ldb, o.sb, beta, o.dc, o.ldc, o.sc))
}

func TestCUDAGemm(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDATF32(false)
	rng := rand.New(rand.NewPCG(7, 8))
	for _, tile := range []int{64, 128} {
		restore := engine.SetGemmPlanForTest(tile, 0)
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				kernels := []string{gemmKernelName(ta, tb, tile, "f32")}
				for _, c := range gemmCases {
					ks := kernels
					if _, splits, _ := engine.GemmPlanForTest(c.m, c.n, c.k, 1); splits > 1 && tile == 64 {
						ks = append(ks, "gemm_splitk_reduce_f32")
					}
					accumulateThenOverwrite(t, rng, ta, tb, c, fmt.Sprintf("%s %dx%dx%d", kernels[0], c.m, c.n, c.k), ks, kernels)
				}
			}
		}
		restore()
	}
}

// The rectangular fp32 tiles (32×128 for a small M, 128×32 for a small N),
// every transpose pair, on the same cases, accumulating, split three ways,
// and overwriting.
func TestCUDAGemmRectangularTiles(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDATF32(false)
	rng := rand.New(rand.NewPCG(7, 9))
	for _, tile := range [][2]int{{32, 128}, {128, 32}} {
		for _, splits := range []int{1, 3} {
			restore := engine.SetGemmTileForTest(tile[0], tile[1], splits)
			for _, ta := range []bool{false, true} {
				for _, tb := range []bool{false, true} {
					kernel := gemmTileKernelName(ta, tb, tile[0], tile[1], "f32")
					for _, c := range gemmCases {
						ks := []string{kernel}
						if splits > 1 && (c.k+7)/8 > 1 {
							ks = append(ks, "gemm_splitk_reduce_f32")
						}
						name := fmt.Sprintf("%s %dx%dx%d splits %d", kernel, c.m, c.n, c.k, splits)
						accumulateThenOverwrite(t, rng, ta, tb, c, name, ks, ks)
					}
				}
			}
			restore()
		}
	}
}

// Which tile the automatic plan gives a product: 128×32 for a linear
// layer's few outputs, 32×128 for its weight gradient, 64×64 otherwise.
func TestCUDAGemmTilePlan(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDATF32(false)
	for _, c := range []struct {
		name           string
		ta, tb         bool
		m, n, k        int
		wantTM, wantTN int
	}{
		{"lenet fc3 forward (batch 1024, 84 → 10)", false, true, 1024, 10, 84, 128, 32},
		{"lenet fc3 weight gradient (10 × 84)", true, false, 10, 84, 1024, 32, 128},
		{"a square product", false, false, 512, 512, 512, 64, 64},
		{"a large square product", false, false, 4096, 4096, 512, 128, 128},
	} {
		tm, tn, err := engine.GemmTileForTest(c.ta, c.tb, c.m, c.n, c.k, 1)
		opsMust(t, err)
		if tm != c.wantTM || tn != c.wantTN {
			t.Errorf("%s: tile %d×%d, want %d×%d", c.name, tm, tn, c.wantTM, c.wantTN)
		}
	}
	// KILN_CUDA_SQUARE_TILES=1 keeps to the square tiles.
	defer engine.SetCUDASquareTilesForTest(true)()
	if tm, tn, _ := engine.GemmTileForTest(false, true, 1024, 10, 84, 1); tm != 64 || tn != 64 {
		t.Errorf("square tiles only: lenet fc3 forward on %d×%d, want 64×64", tm, tn)
	}
}

// accumulateThenOverwrite runs case c on the GPU and the CPU twice and
// compares them: accumulating (alpha and beta away from 0 and 1, C random;
// the kernels acc), then overwriting (beta 0 must not read C, so NaNs there
// stay out, and alpha still scales; the kernels over).
func accumulateThenOverwrite(t *testing.T, rng *rand.Rand, ta, tb bool, c gemmCase, name string, acc, over []string) {
	t.Helper()
	atol, rtol := gemmTol(c.k)
	o := newGemmOperands(t, rng, ta, tb, c.m, c.n, c.k, 1)
	o.run(t, ta, tb, c.m, c.n, c.k, 1, -0.75, 1.5)
	checkKernels(t, acc, name+" alpha=-0.75 beta=1.5", o.dc, o.c, atol, rtol)
	o.c.Fill(math.NaN())
	o.dc.Fill(math.NaN())
	o.run(t, ta, tb, c.m, c.n, c.k, 1, -0.75, 0) // alpha applies without beta too
	checkKernels(t, over, name+" alpha=-0.75 beta=0 over NaN", o.dc, o.c, atol, rtol)
}

// A batch of products with strides, and forced splits (7 of 2 k-steps each
// over k = 109, 3 of uneven length; 11 and 260, whose reduction adds each
// output's splits on 2 and 32 lanes) with alpha and beta through the
// reduction.
func TestCUDAGemmBatchAndSplitK(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDATF32(false)
	rng := rand.New(rand.NewPCG(9, 10))
	for _, c := range []struct {
		m, n, k, splits int
		beta            float32
	}{{5, 9, 21, 1, 0.5}, {19, 2, 61, 3, 0}, {5, 9, 109, 7, 0.5}, {5, 9, 163, 20, 0.5}, {3, 7, 8 * 260, 260, 0}} {
		restore := engine.SetGemmPlanForTest(64, c.splits)
		o := newGemmOperands(t, rng, false, true, c.m, c.n, c.k, 3)
		o.run(t, false, true, c.m, c.n, c.k, 3, 2, c.beta)
		restore()
		ks := []string{"gemm_nt_64x64_f32"}
		if c.splits > 1 {
			ks = append(ks, "gemm_splitk_reduce_f32")
		}
		atol, rtol := gemmTol(c.k)
		checkKernels(t, ks, fmt.Sprintf("batch 3 %dx%dx%d splits %d beta %g", c.m, c.n, c.k, c.splits, c.beta),
			o.dc, o.c, 2*atol, rtol)
	}
	// k = 0: C = beta·C.
	o := newGemmOperands(t, rng, false, false, 4, 6, 0, 1)
	o.run(t, false, false, 4, 6, 0, 1, 1, 0.5)
	checkKernels(t, []string{"gemm_nn_64x64_f32"}, "k=0", o.dc, o.c, 0, 0)
}

// The automatic plan: small products keep one split and the 64 tile; a
// weight-gradient shape (small m·n, long k) splits until its blocks fill
// the GPU several times over, each split at least 16 k-steps long (6×25
// over k = 60000, LeNet's conv1 weights over about 104 images: 442 splits,
// not a fixed cap's 64); a large product takes the 128 tile.
func TestCUDAGemmPlan(t *testing.T) {
	cudaOrSkip(t)
	for _, c := range []struct {
		m, n, k, tile, minSplits, maxSplits int
	}{
		{17, 33, 5, 64, 1, 1},
		{6, 25, 60000, 64, 400, 469},
		{64, 576, 128 * 3136, 64, 100, 118},
		{2048, 2048, 512, 128, 1, 1},
	} {
		tile, splits, err := engine.GemmPlanForTest(c.m, c.n, c.k, 1)
		if err != nil || tile != c.tile || splits < c.minSplits || splits > c.maxSplits {
			t.Errorf("plan %dx%dx%d: tile %d splits %d err %v; want tile %d, splits in [%d,%d]",
				c.m, c.n, c.k, tile, splits, err, c.tile, c.minSplits, c.maxSplits)
		}
	}
}

// tf32Tol is the TF32-against-fp32 tolerance: each input keeps 11
// significant bits (relative error ≤ 2^-11), so a product is off by up to
// 1e-3 of itself; with terms of size ≤ 1 the errors of k products add like
// a random walk, about 1e-3·√k.
func tf32Tol(k int) (atol, rtol float64) {
	return 1e-3 * (1 + math.Sqrt(float64(k))), 1e-3
}

// roundTF32 is cvt.rna.tf32.f32: 10 mantissa bits, nearest, ties away.
func roundTF32(v float64) float64 {
	u := math.Float32bits(float32(v))
	if u&0x7f800000 != 0x7f800000 {
		u = (u + 0x1000) & 0xffffe000
	}
	return float64(math.Float32frombits(u))
}

func tf32Copy(x *engine.Tensor) *engine.Tensor { return roundedCopy(x, roundTF32) }

// bf16Tol is the bf16-against-fp32 tolerance, as tf32Tol's: each input keeps
// 8 significant bits (relative error ≤ 2^-9).
func bf16Tol(k int) (atol, rtol float64) {
	return 8e-3 * (1 + math.Sqrt(float64(k))), 8e-3
}

// roundBF16 is engine.ToBF16, widened.
func roundBF16(v float64) float64 { return float64(engine.ToBF16(float32(v)).Float32()) }

func bf16Copy(x *engine.Tensor) *engine.Tensor { return roundedCopy(x, roundBF16) }

// roundedCopy is x with round applied to each element, in float64.
func roundedCopy(x *engine.Tensor, round func(float64) float64) *engine.Tensor {
	v := x.Values()
	y := engine.New(engine.Float64, x.Shape()...)
	for i, e := range v {
		y.SetAt(i, round(e))
	}
	return y
}

// lowPrecision is a tensor-core precision's test setting: its kernels'
// suffix, its rounding of the inputs and its tolerance against fp32.
type lowPrecision struct {
	dt    string
	round func(float64) float64
	tol   func(k int) (atol, rtol float64)
}

var (
	tf32Setting = lowPrecision{"tf32", roundTF32, tf32Tol}
	bf16Setting = lowPrecision{"bf16", roundBF16, bf16Tol}
)

// TF32 kernels: exact products of TF32-rounded inputs summed in fp32, so they
// match a float64 product of the rounded inputs to fp32 summation error
// (this checks the tiling and the fragment layout of mma.sync, on sm_80+
// and under the emulator's emulation of it alike), and the fp32 CPU product to TF32 precision: inputs
// lose up to 2^-11 relatively each, so the error grows as 1e-3·√k·|terms|.
func TestCUDAGemmTF32(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDATF32(true)
	defer engine.SetCUDATF32(false)
	checkGemmLowPrecision(t, tf32Setting, rand.New(rand.NewPCG(11, 12)))
}

// bf16 kernels (a weight's --precision bf16): the same checks with inputs
// rounded to bf16 (engine.ToBF16's rule, which kiln_to_bf16 follows).
func TestCUDAGemmBF16(t *testing.T) {
	cudaOrSkip(t)
	defer engine.SetGemmPrecisionForTest(engine.BF16)()
	checkGemmLowPrecision(t, bf16Setting, rand.New(rand.NewPCG(15, 16)))
}

// lowPrecisionTiles are the tiles a precision has kernels on: bf16 also
// the rectangular ones (the fp32 loop on rounded inputs), tf32 not.
func lowPrecisionTiles(lp lowPrecision) [][2]int {
	if lp.dt == "bf16" {
		return [][2]int{{64, 64}, {128, 128}, {32, 128}, {128, 32}}
	}
	return [][2]int{{64, 64}, {128, 128}}
}

func checkGemmLowPrecision(t *testing.T, lp lowPrecision, rng *rand.Rand) {
	for _, tile := range lowPrecisionTiles(lp) {
		restore := engine.SetGemmTileForTest(tile[0], tile[1], 0)
		defer restore()
		for ti, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				for ci, c := range []gemmCase{{1, 1, 1}, {17, 33, 13}, {130, 9, 40}} {
					if tile[0] != 128 && ci != 2-ti || tile[0] == 128 && tile[1] == 32 && ci == 1 {
						continue // one shape per transpose pair on the 64 and 32×128 tiles, two on 128×32
					}
					k := []string{gemmTileKernelName(ta, tb, tile[0], tile[1], lp.dt)}
					name := fmt.Sprintf("%s %dx%dx%d", k[0], c.m, c.n, c.k)
					o := newGemmOperands(t, rng, ta, tb, c.m, c.n, c.k, 1)
					c0 := o.c.Clone()
					o.run(t, ta, tb, c.m, c.n, c.k, 1, 1, 1)
					// float64 reference on the rounded inputs.
					ref := c0.As(engine.Float64)
					ra, rb := roundedCopy(o.a, lp.round), roundedCopy(o.b, lp.round)
					for i := 0; i < c.m; i++ {
						for j := 0; j < c.n; j++ {
							s := 0.0
							for p := 0; p < c.k; p++ {
								var av, bv float64
								if ta {
									av = ra.At(p*o.lda + i)
								} else {
									av = ra.At(i*o.lda + p)
								}
								if tb {
									bv = rb.At(j*o.ldb + p)
								} else {
									bv = rb.At(p*o.ldb + j)
								}
								s += av * bv
							}
							ref.SetAt(i*o.ldc+j, c0.At(i*o.ldc+j)+s)
						}
					}
					atol, rtol := gemmTol(c.k)
					checkKernels(t, k, name+" vs rounded float64", o.dc, ref.As(engine.Float32), atol, rtol)
					atol, rtol = lp.tol(c.k)
					checkKernels(t, k, name+" vs fp32 CPU", o.dc, o.c, atol, rtol)
				}
			}
		}
	}
}

// On a real GPU: the tensor-core TF32 and bf16 kernels against the fp32
// kernel on a product large enough to take the 128 tile by itself. The
// emulator already checks the fragment code through its emulation of
// mma.sync (TestCUDAGemmTF32, …BF16); this checks the instruction itself
// and the rounding on the card,
// and that the tensor cores are really in use (results not identical to
// fp32).
func TestCUDAGemmTensorCores(t *testing.T) {
	cudaOrSkip(t)
	if cuda.Device().Backend != "cuda" {
		t.Skip("skipped: needs a real GPU (sm_80+); the emulator emulates mma.sync in TestCUDAGemmTF32 and TestCUDAGemmBF16")
	}
	checkTensorCores(t, tf32Setting, engine.SetCUDATF32)
	checkTensorCores(t, bf16Setting, func(on bool) {
		if on {
			engine.SetGemmPrecisionForTest(engine.BF16)
		} else {
			engine.SetGemmPrecisionForTest(engine.FP32)
		}
	})
}

func checkTensorCores(t *testing.T, lp lowPrecision, set func(on bool)) {
	rng := rand.New(rand.NewPCG(13, 14))
	const m, n, k = 1000, 1100, 777
	for _, ta := range []bool{false, true} {
		for _, tb := range []bool{false, true} {
			o := newGemmOperands(t, rng, ta, tb, m, n, k, 1)
			restore := engine.SetGemmPlanForTest(128, 1)
			set(false)
			fp := o.dc.Clone()
			opsMust(t, engine.GemmForTest(ta, tb, m, n, k, 1, 1, o.da, o.lda, o.sa, o.db, o.ldb, o.sb, 0, fp, o.ldc, o.sc))
			set(true)
			tc := o.dc.Clone()
			opsMust(t, engine.GemmForTest(ta, tb, m, n, k, 1, 1, o.da, o.lda, o.sa, o.db, o.ldb, o.sb, 0, tc, o.ldc, o.sc))
			set(false)
			restore()
			fpv, tcv := fp.Values(), tc.Values()
			same := true
			for i := range fpv {
				if fpv[i] != tcv[i] {
					same = false
					break
				}
			}
			name := gemmKernelName(ta, tb, 128, lp.dt)
			if same {
				t.Errorf("%s: result identical to fp32; the tensor-core path did not run", name)
			}
			atol, rtol := lp.tol(k)
			checkKernels(t, []string{name, gemmKernelName(ta, tb, 128, "f32")},
				lp.dt+" vs fp32 on the GPU", tc, toHost(t, fp), atol, rtol)
		}
	}
}

func toHost(t *testing.T, x *engine.Tensor) *engine.Tensor {
	t.Helper()
	h, err := x.To(engine.CPU)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// bf16's tensor-core tiles step k by 32: split over k (more splits asked
// than k-steps, too) and batched, against the fp32 CPU product at bf16's
// tolerance, each k-step part of exactly one split.
func TestCUDAGemmBF16SplitK(t *testing.T) {
	cudaOrSkip(t)
	defer engine.SetGemmPrecisionForTest(engine.BF16)()
	rng := rand.New(rand.NewPCG(17, 18))
	for _, c := range []struct{ tile, m, n, k, splits int }{
		{64, 5, 9, 109, 3}, {64, 19, 2, 61, 7}, {128, 3, 7, 32*9 + 5, 4}, {128, 130, 9, 200, 2},
	} {
		restore := engine.SetGemmPlanForTest(c.tile, c.splits)
		o := newGemmOperands(t, rng, false, true, c.m, c.n, c.k, 2)
		o.run(t, false, true, c.m, c.n, c.k, 2, 1, 0.5)
		restore()
		atol, rtol := bf16Setting.tol(c.k)
		checkKernels(t, []string{gemmKernelName(false, true, c.tile, "bf16"), "gemm_splitk_reduce_f32"},
			fmt.Sprintf("bf16 batch 2 %dx%dx%d splits %d", c.m, c.n, c.k, c.splits), o.dc, o.c, atol, rtol)
	}
}
