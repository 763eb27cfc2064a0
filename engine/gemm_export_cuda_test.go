package engine

import "fmt"

// Test hooks for the GPU matrix product, which has no exported op of its own
// (its callers are Linear and Conv2D); the external tests in
// gemm_cuda_test.go reach it through these.

// GemmForTest runs gemm (the CPU kernel) or gemmCUDA, by c's device, on flat
// tensors: batch products C_b = alpha·op(A_b)·op(B_b) + beta·C_b with
// X_b starting at element b·sX.
func GemmForTest(transA, transB bool, m, n, k, batch int, alpha float32, a *Tensor, lda, sa int,
	b *Tensor, ldb, sb int, beta float32, c *Tensor, ldc, sc int) error {
	if c.device == CUDA {
		return gemmCUDA(gemmTestPrecision, transA, transB, m, n, k, batch, alpha, a.dptr(), lda, int64(sa), b.dptr(), ldb, int64(sb),
			beta, c.dptr(), ldc, int64(sc), gemmEpilogue{})
	}
	if a.dtype != Float32 || b.dtype != Float32 || c.dtype != Float32 {
		return fmt.Errorf("GemmForTest: float32 only")
	}
	for i := 0; i < batch; i++ {
		gemm(transA, transB, m, n, k, alpha, a.f32[i*sa:], lda, b.f32[i*sb:], ldb, beta, c.f32[i*sc:], ldc)
	}
	return nil
}

// gemmTestPrecision is what GemmForTest's GPU products multiply in.
var gemmTestPrecision = FP32

// SetGemmPrecisionForTest sets the precision of GemmForTest's GPU products
// and returns a function that restores fp32.
func SetGemmPrecisionForTest(p Precision) (restore func()) {
	gemmTestPrecision = p
	return func() { gemmTestPrecision = FP32 }
}

// SetGemmPlanForTest forces the square tile (64 or 128, or 32 where an op
// has it; 0: automatic) and the split count (0: automatic) of every GPU
// product, and returns a function that restores the automatic plan.
func SetGemmPlanForTest(tile, splits int) (restore func()) {
	return SetGemmTileForTest(tile, tile, splits)
}

// SetGemmTileForTest is SetGemmPlanForTest for any tile, rectangular ones
// too (32×128, 128×32 where an op has them).
func SetGemmTileForTest(tm, tn, splits int) (restore func()) {
	gemmForceTM, gemmForceTN, gemmForceSplits = tm, tn, splits
	return func() { gemmForceTM, gemmForceTN, gemmForceSplits = 0, 0, 0 }
}

// ConvPlanForTest reports the tile and split count the plan picks for a
// convolution pass's m×n×k product ("forward", "input_grad" or
// "weight_grad").
func ConvPlanForTest(pass string, m, n, k int, prec Precision) (tm, tn, splits int, err error) {
	ks := map[string]gemmKernels{"forward": kConvForward, "input_grad": kConvInputGrad, "weight_grad": kConvWeightGrad}[pass]
	p, err := planGemm(ks, m, n, k, 1, pass == "weight_grad", prec)
	return p.tm, p.tn, p.splits, err
}

// GemmPlanForTest reports the tile and split count the plan picks.
func GemmPlanForTest(m, n, k, batch int) (tile, splits int, err error) {
	p, err := planGemm(kGemm[0][0], m, n, k, batch, true, FP32)
	return p.tm, p.splits, err
}

// SetCUDASquareTilesForTest sets KILN_CUDA_SQUARE_TILES's switch and
// returns a function that puts it back.
func SetCUDASquareTilesForTest(on bool) (restore func()) {
	was := cudaSquareTiles
	cudaSquareTiles = on
	return func() { cudaSquareTiles = was }
}

// GemmTileForTest reports the tile the plan picks for an fp32 product.
func GemmTileForTest(transA, transB bool, m, n, k, batch int) (tm, tn int, err error) {
	p, err := planGemm(kGemm[b2i(transA)][b2i(transB)], m, n, k, batch, true, FP32)
	return p.tm, p.tn, err
}
