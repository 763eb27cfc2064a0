//go:build cgo && amd64

package engine

/*
#cgo CFLAGS: -O3
#include "sgemm.h"
*/
import "C"

import (
	"fmt"
	"sync"
	"unsafe"
)

// sgemm is the float32 matrix multiply (see gemm). It runs the C kernel in
// sgemm.c, splitting the product into Threads() parts when it is big enough
// to pay for the hand-off: along N or M on micro-tile boundaries (every
// element then gets the same arithmetic as in a one-thread call), or along K
// for a long reduction into a small C (partial products summed in part
// order). The split depends only on the shape and the thread count.
func sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m <= 0 || n <= 0 {
		return
	}
	checkGemmArgs(transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	if m*n*k < sgemmParallelMin || Threads() == 1 { // one cgo call, the plan made in C
		C.kiln_sgemm(cbool(transA), cbool(transB), C.long(m), C.long(n), C.long(k), C.float(alpha),
			cptr(a), C.long(lda), cptr(b), C.long(ldb), C.float(beta), cptr(c), C.long(ldc))
		return
	}
	plan := C.kiln_sgemm_plan(cbool(transA), cbool(transB), C.long(m), C.long(n), C.long(k))
	split := sgemmSplit(plan, m, n, k, Threads())
	if split == splitNone {
		sgemmC(plan, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	t := sgemmTasks.Get().(*sgemmTask)
	*t = sgemmTask{plan: plan, split: split, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha,
		a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc}
	switch split {
	case splitN:
		parallelFor((n+sgemmNR-1)/sgemmNR, t)
	case splitM:
		parallelFor((m+sgemmMR-1)/sgemmMR, t)
	case splitK:
		kt := (k + sgemmKC - 1) / sgemmKC
		q := parts(kt)
		t.partial = takeScratch[float32]((q - 1) * m * n)
		parallelFor(kt, t)
		for i := 0; i < m; i++ {
			ci := c[i*ldc : i*ldc+n]
			for part := 1; part < q; part++ {
				for j, v := range t.partial[((part-1)*m+i)*n:][:n] {
					ci[j] += v
				}
			}
		}
		giveScratch(t.partial)
	}
	*t = sgemmTask{}
	sgemmTasks.Put(t)
}

// Tile sizes shared with sgemm.c: splits fall on micro-tile and k-slice
// boundaries so a partitioned product does the same arithmetic as a whole one.
const (
	sgemmMR = 6
	sgemmNR = 16
	sgemmKC = 256
)

// sgemmParallelMin is the m·n·k below which one thread does the whole product
// (about 20 µs of work): waking a parked pool thread costs 5–15 µs.
const sgemmParallelMin = 1 << 20

// sgemmInC is true: sgemm runs the C kernel.
const sgemmInC = true

const (
	splitNone = iota
	splitN
	splitM
	splitK
)

// sgemmSplit picks how p threads share a product: N if there are enough
// column tiles, else M, else K; none when the product is small.
func sgemmSplit(plan C.int, m, n, k, p int) int {
	nt, mt, kt := (n+sgemmNR-1)/sgemmNR, (m+sgemmMR-1)/sgemmMR, (k+sgemmKC-1)/sgemmKC
	dot := plan&C.KILN_SGEMM_DOT != 0 // its tiles differ: split only K
	switch {
	case p <= 1 || m*n*k < sgemmParallelMin:
		return splitNone
	case !dot && (nt >= 2*p || (nt >= p && nt >= mt)):
		return splitN
	case !dot && mt >= p:
		return splitM
	case kt > 1:
		return splitK
	}
	return splitNone
}

// sgemmSplitOf reports the split sgemm uses for a shape (for tests).
func sgemmSplitOf(transA, transB bool, m, n, k int) int {
	return sgemmSplit(C.kiln_sgemm_plan(cbool(transA), cbool(transB), C.long(m), C.long(n), C.long(k)), m, n, k, Threads())
}

type sgemmTask struct {
	plan           C.int
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a, b, c        []float32
	lda, ldb, ldc  int
	split          int
	partial        []float32
}

var sgemmTasks = sync.Pool{New: func() any { return new(sgemmTask) }}

// run computes tiles [lo, hi) along the split dimension.
func (t *sgemmTask) run(part, lo, hi int) {
	switch t.split {
	case splitN:
		j0, j1 := lo*sgemmNR, min(hi*sgemmNR, t.n)
		boff := j0
		if t.transB {
			boff = j0 * t.ldb
		}
		sgemmC(t.plan, t.transA, t.transB, t.m, j1-j0, t.k, t.alpha, t.a, t.lda, t.b[boff:], t.ldb, t.beta, t.c[j0:], t.ldc)
	case splitM:
		i0, i1 := lo*sgemmMR, min(hi*sgemmMR, t.m)
		aoff := i0 * t.lda
		if t.transA {
			aoff = i0
		}
		sgemmC(t.plan, t.transA, t.transB, i1-i0, t.n, t.k, t.alpha, t.a[aoff:], t.lda, t.b, t.ldb, t.beta, t.c[i0*t.ldc:], t.ldc)
	case splitK:
		p0, p1 := lo*sgemmKC, min(hi*sgemmKC, t.k)
		aoff, boff := p0, p0*t.ldb
		if t.transA {
			aoff = p0 * t.lda
		}
		if t.transB {
			boff = p0
		}
		if part == 0 {
			sgemmC(t.plan, t.transA, t.transB, t.m, t.n, p1-p0, t.alpha, t.a[aoff:], t.lda, t.b[boff:], t.ldb, t.beta, t.c, t.ldc)
		} else {
			dst := t.partial[(part-1)*t.m*t.n:][:t.m*t.n]
			sgemmC(t.plan, t.transA, t.transB, t.m, t.n, p1-p0, t.alpha, t.a[aoff:], t.lda, t.b[boff:], t.ldb, 0, dst, t.n)
		}
	}
}

// sgemmC is one single-threaded call into the C kernel; the caller has
// checked the slices.
func sgemmC(plan C.int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	C.kiln_sgemm_run(plan, cbool(transA), cbool(transB), C.long(m), C.long(n), C.long(k), C.float(alpha),
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

// sgemmSetAVX2 switches between the AVX2 kernel and the portable C path (for
// tests); it reports whether AVX2 is now in use.
func sgemmSetAVX2(on bool) bool { return C.kiln_sgemm_set_path(cbool(on)) != 0 }

// sgemmPlans lists the algorithm choices sgemmForced accepts (for tests).
var sgemmPlans = []int{0, C.KILN_SGEMM_PACK_A, C.KILN_SGEMM_PACK_B, C.KILN_SGEMM_PACK_A | C.KILN_SGEMM_PACK_B, C.KILN_SGEMM_DOT}

// sgemmForced runs the C kernel single-threaded with the given plan instead of
// the size heuristic (for tests and tuning).
func sgemmForced(plan int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m <= 0 || n <= 0 {
		return
	}
	checkGemmArgs(transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	sgemmC(C.int(plan), transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
