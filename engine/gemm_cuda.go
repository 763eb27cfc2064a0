package engine

import (
	"fmt"
	"math"
	"os"
	"strconv"

	"github.com/kiln-ml/kiln/cuda"
)

// The GPU matrix product (kernels/gemm.cu, tiling in kernels/gemm_tile.cuh):
// gemm's twin on device buffers, used by Linear and, through the same tiling,
// by the implicit-GEMM convolution (conv_cuda.go).
//
// Plan: a 64×64 tile by default, 128×128 (8×8 outputs per thread) once the
// product has enough 128-tiles to fill the GPU; when the tile grid is still
// small and k is long (weight gradients: k is the batch), k is split so that
// the blocks fill an H100/H200 several times over (gemmSplitBlocks; no
// smaller cap, so a weight gradient of few channels still spreads its batch
// over the whole GPU), each split writing a partial product that a second
// kernel adds up in order. The plan depends only on the shapes, never on the GPU
// model or timing, so a result is the same on every run and every card.
//
// Precision, per weight (Tensor.SetPrecision): TF32 and bf16 products run
// the tensor-core kernels of their tile (sm_80+: mma.sync m16n8k8 for
// TF32, m16n8k16 on ldmatrix fragments for bf16; the emulator runs the same
// fragments through an emulation of the instructions); bf16 rounds each input to
// 8 significant bits and sums in fp32, as autocast does.
//
// TF32: with KILN_TF32=1 (or SetCUDATF32(true)) every fp32 product uses the
// TF32 tensor-core kernels of its tile, several times the fp32 rate, with
// inputs rounded to 10 mantissa bits (about 1e-3 relative error per product,
// as PyTorch's allow_tf32). Off by default:
// fp32 is what the CPU reference and the gradient checks agree with (the
// KILN_CUDA_CHECK comparison, 1e-3, can flag TF32 on long reductions).

// gemmKernels are one op's kernels: fp32, tf32 and bf16 on the 64×64 and
// 128×128 tiles, and fp32 and bf16 on the smaller and rectangular tiles
// where the op has them (nil otherwise): 32×32, 32×128 (a small M) and
// 128×32 (a small N).
type gemmKernels struct {
	k64, k128, tf64, tf128, bf64, bf128 *cuda.Kernel
	k32, k32x128, k128x32               *cuda.Kernel
	bf32, bf32x128, bf128x32            *cuda.Kernel
}

// kGemm[transA][transB]
var kGemm = [2][2]gemmKernels{
	{
		{kern.gemm_nn_64x64_f32, kern.gemm_nn_128x128_f32, kern.gemm_nn_64x64_tf32, kern.gemm_nn_128x128_tf32,
			kern.gemm_nn_64x64_bf16, kern.gemm_nn_128x128_bf16,
			nil, kern.gemm_nn_32x128_f32, kern.gemm_nn_128x32_f32,
			nil, kern.gemm_nn_32x128_bf16, kern.gemm_nn_128x32_bf16},
		{kern.gemm_nt_64x64_f32, kern.gemm_nt_128x128_f32, kern.gemm_nt_64x64_tf32, kern.gemm_nt_128x128_tf32,
			kern.gemm_nt_64x64_bf16, kern.gemm_nt_128x128_bf16,
			nil, kern.gemm_nt_32x128_f32, kern.gemm_nt_128x32_f32,
			nil, kern.gemm_nt_32x128_bf16, kern.gemm_nt_128x32_bf16},
	},
	{
		{kern.gemm_tn_64x64_f32, kern.gemm_tn_128x128_f32, kern.gemm_tn_64x64_tf32, kern.gemm_tn_128x128_tf32,
			kern.gemm_tn_64x64_bf16, kern.gemm_tn_128x128_bf16,
			nil, kern.gemm_tn_32x128_f32, kern.gemm_tn_128x32_f32,
			nil, kern.gemm_tn_32x128_bf16, kern.gemm_tn_128x32_bf16},
		{kern.gemm_tt_64x64_f32, kern.gemm_tt_128x128_f32, kern.gemm_tt_64x64_tf32, kern.gemm_tt_128x128_tf32,
			kern.gemm_tt_64x64_bf16, kern.gemm_tt_128x128_bf16,
			nil, kern.gemm_tt_32x128_f32, kern.gemm_tt_128x32_f32,
			nil, kern.gemm_tt_32x128_bf16, kern.gemm_tt_128x32_bf16},
	},
}

const (
	gemmThreads = 256
	// gemmTargetBlocks is the tile grid that counts as filling the GPU:
	// two waves of an H100's 132 SMs (the 128 tile takes over above it; a
	// grid under half of it is split). A constant (not the SM count) so
	// that the split, and so the summation order, is the same on every GPU.
	gemmTargetBlocks = 264
	// gemmMinSplitK: a split covers at least this much of k.
	gemmMinSplitK = 128
	// gemmMaxWorkspace bounds the split-K partial products (bytes).
	gemmMaxWorkspace = 256 << 20
	gridMaxYZ        = 65535
)

var cudaTF32 = os.Getenv("KILN_TF32") == "1"

// gemmSplitBlocks is the grid a split-K plan aims for when the tile grid is
// under one wave: 1056, eight blocks for each of 132 SMs, so that the 64
// tile's weight gradients fill two blocks an SM twice over and the 32×32
// tile's (64 registers) four. On the H200 (cuda/results/nvidia-h200-
// 2026-12-04/split-ab.txt) cnn b1024 stepped in 13.02 ms against 14.41 with
// two waves of one block an SM (264), LeNet b1024 in 1.25 against 1.28.
// KILN_CUDA_SPLIT_BLOCKS overrides it for such an A/B (scripts/gpu-run.sh).
// Any value gives the same result run after run; another value sums in
// another order.
var gemmSplitBlocks = positiveEnv("KILN_CUDA_SPLIT_BLOCKS", 4*gemmTargetBlocks)

func positiveEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// cudaSquareTiles keeps the plan to the 64×64 and 128×128 tiles
// (KILN_CUDA_SQUARE_TILES=1): the other side of an A/B of the smaller and
// rectangular ones (scripts/gpu-run.sh profiles).
var cudaSquareTiles = os.Getenv("KILN_CUDA_SQUARE_TILES") == "1"

// SetCUDATF32 turns the TF32 tensor-core path of the GPU matrix products
// (GEMM, Linear, Conv2D) on or off; KILN_TF32=1 sets it at start-up. TF32
// rounds each input to 10 mantissa bits: faster on sm_80+ GPUs, about 1e-3
// relative error per product instead of fp32's 6e-8.
func SetCUDATF32(on bool) { cudaTF32 = on }

// CUDATF32 reports whether the TF32 path is on.
func CUDATF32() bool { return cudaTF32 }

// gemmForceTM×gemmForceTN and gemmForceSplits override the plan (tests:
// every kernel variant on small shapes). Zero means automatic; a forced
// tile the op lacks falls back to 64×64.
var gemmForceTM, gemmForceTN, gemmForceSplits int

type gemmPlan struct {
	k      *cuda.Kernel
	tm, tn int // the tile: BM×BN
	splits int
	grid   cuda.Dim3
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// planGemm picks the tile and the split for an m×n×k product repeated over
// batch groups, in precision prec (FP32 becomes TF32 under KILN_TF32); split
// says whether the op can take a split-K workspace.
func planGemm(ks gemmKernels, m, n, k, batch int, split bool, prec Precision) (gemmPlan, error) {
	p := gemmPlan{splits: 1}
	p.tm, p.tn = ks.tile(m, n, batch, prec)
	p.k = ks.pick(p.tm, p.tn, prec)
	blocks := ceilDiv(m, p.tm) * ceilDiv(n, p.tn) * batch
	bk := tileBK(p.tm, p.tn, prec)
	steps := ceilDiv(k, bk)
	if split && steps > 1 {
		s := 1
		if blocks < gemmTargetBlocks/2 { // under one wave
			s = min(ceilDiv(gemmSplitBlocks, blocks), steps/(gemmMinSplitK/bk), gemmSplitBlocks)
		}
		if gemmForceSplits != 0 {
			s = gemmForceSplits
		}
		for s > 1 && int64(s)*int64(batch)*int64(m)*int64(n)*4 > gemmMaxWorkspace {
			s /= 2
		}
		if s > 1 {
			per := ceilDiv(steps, s)
			p.splits = ceilDiv(steps, per) // no split left empty
		}
	}
	gx, gy, gz := ceilDiv(n, p.tn), ceilDiv(m, p.tm), batch*p.splits
	if gy > gridMaxYZ || gz > gridMaxYZ || gx > math.MaxInt32 {
		return p, fmt.Errorf("gemm %d×%d×%d (batch %d): grid %d×%d×%d exceeds the device's limits", m, n, k, batch, gx, gy, gz)
	}
	p.grid = cuda.Dim3{X: uint32(gx), Y: uint32(gy), Z: uint32(gz)}
	return p, nil
}

// tileBK is a tile's k-step (kernels/gemm_tile.cuh): 32 for the bf16
// tensor-core tiles (64×64 and 128×128), 8 for the others. A split covers
// whole k-steps.
func tileBK(tm, tn int, prec Precision) int {
	if gemmPrecision(prec) == BF16 && tm == tn && tm >= 64 {
		return 32
	}
	return 8
}

// tile picks an m×n product's tile: 128×128 for a large product that
// fills the GPU with them; otherwise, in fp32 and bf16, whichever of 64×64
// and the op's smaller and rectangular tiles costs least, counting blocks (each
// runs the whole k) weighted by a block's cost a k-step against the 64
// tile's. A 32×32 block does a quarter of the products for about half the
// time (the same shared-memory traffic and barriers a k-step), so it weighs
// 0.5; the rectangular ones do as much as a 64 block. A model, not yet
// measured on a GPU.
func (ks gemmKernels) tile(m, n, batch int, prec Precision) (tm, tn int) {
	if gemmForceTM != 0 {
		if ks.pick(gemmForceTM, gemmForceTN, prec) != nil {
			return gemmForceTM, gemmForceTN
		}
		return 64, 64
	}
	if m >= 128 && n >= 128 && ceilDiv(m, 128)*ceilDiv(n, 128)*batch >= gemmTargetBlocks/2 {
		return 128, 128
	}
	tm, tn = 64, 64
	if gemmPrecision(prec) == TF32 || cudaSquareTiles {
		return tm, tn
	}
	best := float64(ceilDiv(m, 64) * ceilDiv(n, 64))
	for _, c := range []struct {
		tm, tn int
		weight float64
	}{{32, 128, 1}, {128, 32, 1}, {32, 32, 0.5}} {
		if ks.pick(c.tm, c.tn, prec) == nil {
			continue
		}
		if cost := c.weight * float64(ceilDiv(m, c.tm)*ceilDiv(n, c.tn)); cost < best {
			best, tm, tn = cost, c.tm, c.tn
		}
	}
	return tm, tn
}

// pick is the kernel of a tile and precision (nil where the op has none:
// the tiles other than 64×64 and 128×128 are fp32 and bf16 only).
func (ks gemmKernels) pick(tm, tn int, prec Precision) *cuda.Kernel {
	p := gemmPrecision(prec)
	switch {
	case tm == 64 && tn == 64 || tm == 128 && tn == 128:
		k := [3][2]*cuda.Kernel{FP32: {ks.k64, ks.k128}, TF32: {ks.tf64, ks.tf128}, BF16: {ks.bf64, ks.bf128}}
		return k[p][b2i(tm == 128)]
	case p == TF32:
		return nil
	case tm == 32 && tn == 32:
		return [3]*cuda.Kernel{FP32: ks.k32, BF16: ks.bf32}[p]
	case tm == 32 && tn == 128:
		return [3]*cuda.Kernel{FP32: ks.k32x128, BF16: ks.bf32x128}[p]
	case tm == 128 && tn == 32:
		return [3]*cuda.Kernel{FP32: ks.k128x32, BF16: ks.bf128x32}[p]
	}
	return nil
}

// gemmPrecision is the precision a product of a weight in prec runs in:
// fp32 becomes TF32 under KILN_TF32.
func gemmPrecision(prec Precision) Precision {
	if prec == FP32 && cudaTF32 {
		return TF32
	}
	return prec
}

// workspace allocates a plan's split-K buffer (none for one split).
func (p gemmPlan) workspace(batch, m, n int) (cuda.Ptr, int64, error) {
	if p.splits <= 1 {
		return 0, 0, nil
	}
	bytes := int64(p.splits) * int64(batch) * int64(m) * int64(n) * 4
	ws, err := cuda.Alloc(bytes)
	return ws, bytes, err
}

// gemmEpilogue is what a product does to C after alpha·AB + beta·C: add a
// bias per column (bias 0: none), then ReLU.
type gemmEpilogue struct {
	bias cuda.Ptr
	relu bool
}

// splitKReduce finishes a split product: C[b] = alpha·Σ partials + beta·C[b],
// then the epilogue. A non-zero lastCol takes column n−1 of each matrix
// (lastCol[b·m + i]); C then holds the n−1 before it.
func splitKReduce(c cuda.Ptr, ldc int, sc int64, ws cuda.Ptr, m, n, batch, splits int, alpha, beta float32,
	ep gemmEpilogue, lastCol cuda.Ptr) error {
	lanes := splitKLanes(splits)
	var a cuda.Args
	a.Ptr(c).Int(ldc).I64(sc).Ptr(ws).Int(m).Int(n).Int(batch).Int(splits).F32(alpha).F32(beta).Ptr(ep.bias).Bool(ep.relu).
		Ptr(lastCol).Int(lanes)
	return launchElt(kern.gemm_splitk_reduce_f32, batch*m*n*lanes, &a)
}

// splitKLanes is how many lanes add one output's splits in the reduction:
// the largest power of two up to 32 that leaves each lane at least four
// (one lane, the plain split order, under eight splits). It depends on the
// split count alone, so the sums' order is the same on every GPU.
func splitKLanes(splits int) int {
	lanes := 1
	for lanes < 32 && 8*lanes <= splits {
		lanes *= 2
	}
	return lanes
}

// biasSplit is how a bias gradient's sum over n rows (images, or a linear
// layer's batch) splits over blocks column blocks: runs of per rows, at
// least minPer, so that the grid comes near gemmSplitBlocks with no more
// runs than a grid's y allows. It depends only on the shapes.
func biasSplit(n, blocks, minPer int) (per, splits int) {
	per = max(ceilDiv(n, ceilDiv(gemmSplitBlocks, blocks)), minPer, ceilDiv(n, gridMaxYZ))
	return per, ceilDiv(n, per)
}

// splitSum runs launch(out) for a sum into the n values at db split into
// splits parts: out is db itself for one split (or no db), else a workspace
// of splits×n partials that are then added to db in split order.
func splitSum(db cuda.Ptr, splits, n int, launch func(out cuda.Ptr) error) error {
	if db == 0 || splits == 1 {
		return launch(db)
	}
	bytes := 4 * int64(splits) * int64(n)
	ws, err := cuda.Alloc(bytes)
	if err != nil {
		return err
	}
	defer cuda.Free(ws, bytes)
	if err := launch(ws); err != nil {
		return err
	}
	return splitKReduce(db, n, 0, ws, 1, n, 1, splits, 1, 1, gemmEpilogue{}, 0)
}

// gemmCUDA is gemm on device buffers, batch times: for each b,
// C_b = alpha·op(A_b)·op(B_b) + beta·C_b with X_b = X + b·sX (elements). The
// same conventions as gemm: row-major, op(A) m×k, op(B) k×n, beta == 0
// overwrites C without reading it; then ep. The launches are queued; the
// caller's buffers must stay alive until the stream reaches them (as every
// op's do).
func gemmCUDA(prec Precision, transA, transB bool, m, n, k, batch int, alpha float32, a cuda.Ptr, lda int, sa int64,
	b cuda.Ptr, ldb int, sb int64, beta float32, c cuda.Ptr, ldc int, sc int64, ep gemmEpilogue) error {
	if m == 0 || n == 0 || batch == 0 {
		return nil
	}
	ks := kGemm[b2i(transA)][b2i(transB)]
	p, err := planGemm(ks, m, n, k, batch, true, prec)
	if err != nil {
		return err
	}
	ws, wsBytes, err := p.workspace(batch, m, n)
	if err != nil {
		return err
	}
	defer func() {
		if ws != 0 {
			cuda.Free(ws, wsBytes)
		}
	}()
	var args cuda.Args
	args.Ptr(a).Int(lda).I64(sa).Ptr(b).Int(ldb).I64(sb).Ptr(c).Int(ldc).I64(sc).
		Int(m).Int(n).Int(k).F32(alpha).F32(beta).Int(p.splits).Ptr(ws).Ptr(ep.bias).Bool(ep.relu)
	if err := cuda.Launch(p.k, p.grid, cuda.D1(gemmThreads), 0, &args); err != nil {
		return err
	}
	if p.splits > 1 {
		return splitKReduce(c, ldc, sc, ws, m, n, batch, p.splits, alpha, beta, ep, 0)
	}
	return nil
}

func b2i(v bool) int {
	if v {
		return 1
	}
	return 0
}
