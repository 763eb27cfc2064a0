//go:build cgo && amd64

package engine

/*
#cgo CFLAGS: -O3
#include "gemm_cpu.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// sgemm is the float32 matrix multiply (see gemm): the C kernel in
// gemm_cpu.c, split into parts fixed by the shape and Threads(), which run on
// the worker pool every CPU op shares (parallelFor).
func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemmBias(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, nil)
}

// sgemmBias is sgemm, then bias (n, or nil) added to each row of C: the
// bits of addRowBias after the product, added as each block of rows is
// finished, while it is in cache.
func sgemmBias(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int, bias []float32) {
	if m <= 0 || n <= 0 {
		return
	}
	checkGemmArgs(transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	if bias != nil && len(bias) < n {
		panic(fmt.Sprintf("engine: sgemm bias of %d for %d columns", len(bias), n))
	}
	split := splitNone
	if k > 0 {
		split = int(C.kiln_sgemm_split(cbool(transA), cbool(transB), C.long(m), C.long(n), C.long(k), C.long(ldb),
			C.int(Threads())))
	}
	if split == splitNone {
		sgemmOneBias(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias)
		return
	}
	parts := min(int(C.kiln_sgemm_tiles(C.int(split), C.long(m), C.long(n), C.long(k))), Threads())
	t := gemmTasks.Get().(*gemmTask)
	*t = gemmTask{split: split, parts: parts, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
		a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, bias: bias}
	if split == splitK {
		t.partial = takeScratch[float32]((parts - 1) * m * n)
	}
	parallelFor(parts, t)
	if split == splitK {
		sgemmSumParts(parts, m, n, t.partial, c, ldc, bias)
		giveScratch(t.partial)
	}
	*t = gemmTask{}
	gemmTasks.Put(t)
}

// gemmTask is one split product; its parts are parallelFor's items.
type gemmTask struct {
	split, parts     int
	transA, transB   bool
	m, n, k          int
	alpha, beta      float32
	a, b, c, partial []float32
	lda, ldb, ldc    int
	bias             []float32
}

var gemmTasks = taskPool{New: func() any { return new(gemmTask) }}

func (t *gemmTask) run(_, lo, hi int) {
	for part := lo; part < hi; part++ {
		C.kiln_sgemm_part(C.int(t.split), C.int(t.parts), C.int(part), cbool(t.transA), cbool(t.transB), C.long(t.m),
			C.long(t.n), C.long(t.k), C.float(t.alpha), cptr(t.a), C.long(t.lda), cptr(t.b), C.long(t.ldb),
			C.float(t.beta), cptr(t.c), C.long(t.ldc), cptr(t.partial), cptr(t.bias))
	}
}

// sgemmSumParts adds a K split's parts 1… (partial, m×n each) into C in
// part order, then bias (or nil) to each row.
func sgemmSumParts(parts, m, n int, partial, c []float32, ldc int, bias []float32) {
	C.kiln_sgemm_sum_parts(C.int(parts), C.long(m), C.long(n), cptr(partial), cptr(c), C.long(ldc), cptr(bias))
}

// sgemmOne runs the product on the calling thread.
func sgemmOne(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	sgemmOneBias(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, nil)
}

func sgemmOneBias(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int, bias []float32) {
	plan := C.kiln_sgemm_plan(cbool(transA), cbool(transB), C.long(m), C.long(n), C.long(k), C.long(ldb))
	C.kiln_sgemm_run(plan, cbool(transA), cbool(transB), C.long(m), C.long(n), C.long(k), C.float(alpha),
		cptr(a), C.long(lda), cptr(b), C.long(ldb), C.float(beta), cptr(c), C.long(ldc), cptr(bias))
}

func cbool(v bool) C.int {
	if v {
		return 1
	}
	return 0
}

func cptr(s []float32) *C.float { return (*C.float)(unsafe.Pointer(unsafe.SliceData(s))) }

// checkGemmArgs panics when a slice is too short or a stride too small for the
// product: the C kernel would otherwise read or write out of bounds.
func checkGemmArgs(transA, transB bool, m, n, k, la, lda, lb, ldb, lc, ldc int) {
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	if k > 0 && (lda < ac || la < (ar-1)*lda+ac || ldb < bc || lb < (br-1)*ldb+bc) ||
		ldc < n || lc < (m-1)*ldc+n {
		panic(fmt.Sprintf("engine: sgemm m=%d n=%d k=%d transA=%v transB=%v: len(a)=%d lda=%d len(b)=%d ldb=%d len(c)=%d ldc=%d",
			m, n, k, transA, transB, la, lda, lb, ldb, lc, ldc))
	}
}

// sgemmInC is true: sgemm runs the C kernel.
const sgemmInC = true

// How sgemm splits a product across threads (kiln_sgemm_split).
const (
	splitNone = iota
	splitN
	splitM
	splitK
)

// sgemmSplitOf reports the split sgemm uses for a shape (for tests).
func sgemmSplitOf(transA, transB bool, m, n, k int) int {
	ldb := n
	if transB {
		ldb = k
	}
	return int(C.kiln_sgemm_split(cbool(transA), cbool(transB), C.long(m), C.long(n), C.long(k), C.long(ldb), C.int(Threads())))
}

// sgemmPlans lists the algorithm choices sgemmForced accepts (for tests).
var sgemmPlans = []int{0, C.KILN_SGEMM_PACK_A, C.KILN_SGEMM_PACK_B, C.KILN_SGEMM_PACK_A | C.KILN_SGEMM_PACK_B, C.KILN_SGEMM_DOT}

// sgemmPlanDot marks the plan whose sums run in another order (dot products).
const sgemmPlanDot = C.KILN_SGEMM_DOT

// sgemmForced runs the C kernel single-threaded with the given plan instead of
// the shape heuristic (for tests and tuning).
func sgemmForced(plan int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m <= 0 || n <= 0 {
		return
	}
	checkGemmArgs(transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	C.kiln_sgemm_run(C.int(plan), cbool(transA), cbool(transB), C.long(m), C.long(n), C.long(k), C.float(alpha),
		cptr(a), C.long(lda), cptr(b), C.long(ldb), C.float(beta), cptr(c), C.long(ldc), nil)
}
