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

// sgemm is the float32 matrix multiply (see gemm): one call into the C kernel
// in gemm_cpu.c, which splits big products across Threads() threads with a
// partition fixed by the shape and the thread count.
func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m <= 0 || n <= 0 {
		return
	}
	checkGemmArgs(transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	C.kiln_sgemm(C.int(Threads()), cbool(transA), cbool(transB), C.long(m), C.long(n), C.long(k), C.float(alpha),
		cptr(a), C.long(lda), cptr(b), C.long(ldb), C.float(beta), cptr(c), C.long(ldc))
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

// sgemmForced runs the C kernel single-threaded with the given plan instead of
// the shape heuristic (for tests and tuning).
func sgemmForced(plan int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m <= 0 || n <= 0 {
		return
	}
	checkGemmArgs(transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	C.kiln_sgemm_run(C.int(plan), cbool(transA), cbool(transB), C.long(m), C.long(n), C.long(k), C.float(alpha),
		cptr(a), C.long(lda), cptr(b), C.long(ldb), C.float(beta), cptr(c), C.long(ldc))
}
