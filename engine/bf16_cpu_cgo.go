//go:build cgo && amd64

package engine

/*
#cgo CFLAGS: -O3
#cgo noescape kiln_f32_to_bf16
#cgo nocallback kiln_f32_to_bf16
#cgo noescape kiln_bf16_to_f32
#cgo nocallback kiln_bf16_to_f32
#cgo noescape kiln_bf16_round_f32
#cgo nocallback kiln_bf16_round_f32
#cgo noescape kiln_sgemm_bf16
#cgo nocallback kiln_sgemm_bf16
#cgo noescape kiln_sgemm_bf16_words
#cgo nocallback kiln_sgemm_bf16_words
#include "bf16_cpu.h"
*/
import "C"

import "unsafe"

func cpuBF16() bool { return C.kiln_cpu_bf16() != 0 }

func cpuAMX() bool { return C.kiln_cpu_amx() != 0 }

// useAMX turns the bf16 product's AMX path off or back on (tests).
func useAMX(on bool) { C.kiln_bf16_use_amx(cbool(on)) }

func toBF16C(dst []Bfloat16, src []float32) bool {
	if len(src) == 0 {
		return true
	}
	C.kiln_f32_to_bf16((*C.uint16_t)(unsafe.Pointer(unsafe.SliceData(dst))), (*C.float)(unsafe.Pointer(unsafe.SliceData(src))), C.long(len(src)))
	return true
}

// roundBF16C rounds src to bf16 into dst as float32 where the CPU has
// AVX512_BF16, and reports whether it did.
func roundBF16C(dst, src []float32) bool {
	if len(src) == 0 {
		return true
	}
	if !cpuBF16() {
		return false
	}
	_ = dst[len(src)-1]
	C.kiln_bf16_round_f32(cptr(dst), cptr(src), C.long(len(src)))
	return true
}

func fromBF16C(dst []float32, src []Bfloat16) bool {
	if len(src) == 0 {
		return true
	}
	C.kiln_bf16_to_f32((*C.float)(unsafe.Pointer(unsafe.SliceData(dst))), (*C.uint16_t)(unsafe.Pointer(unsafe.SliceData(src))), C.long(len(src)))
	return true
}

func sgemmBF16C(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int,
	beta float32, c []float32, ldc int, bias []float32) bool {
	var aw, bw C.long
	C.kiln_sgemm_bf16_words(C.long(m), C.long(n), &aw, &bw)
	buf := takeScratchUnzeroed(int(aw + bw)) // 32-bit words of packed bf16 pairs, all written before read
	defer giveScratch(buf)
	words := (*C.uint32_t)(unsafe.Pointer(unsafe.SliceData(buf)))
	return C.kiln_sgemm_bf16(cbool(transA), cbool(transB), C.long(m), C.long(n), C.long(k), C.float(alpha),
		cptr(a), C.long(lda), cptr(b), C.long(ldb), C.float(beta), cptr(c), C.long(ldc), words,
		(*C.uint32_t)(unsafe.Add(unsafe.Pointer(words), 4*aw)), cptr(bias)) != 0
}

// checkBF16GemmArgs panics, as sgemm does, when a slice is too short for the
// product.
func checkBF16GemmArgs(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32,
	ldc int) {
	checkGemmArgs(transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
}
