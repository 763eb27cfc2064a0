//go:build cgo && amd64

package engine

/*
#cgo CFLAGS: -O3
#cgo noescape kiln_f32_to_bf16
#cgo nocallback kiln_f32_to_bf16
#cgo noescape kiln_bf16_to_f32
#cgo nocallback kiln_bf16_to_f32
#include "bf16_cpu.h"
*/
import "C"

import "unsafe"

func cpuBF16() bool { return C.kiln_cpu_bf16() != 0 }

func toBF16C(dst []BF16, src []float32) bool {
	if len(src) == 0 {
		return true
	}
	C.kiln_f32_to_bf16((*C.uint16_t)(unsafe.Pointer(unsafe.SliceData(dst))), (*C.float)(unsafe.Pointer(unsafe.SliceData(src))), C.long(len(src)))
	return true
}

func fromBF16C(dst []float32, src []BF16) bool {
	if len(src) == 0 {
		return true
	}
	C.kiln_bf16_to_f32((*C.float)(unsafe.Pointer(unsafe.SliceData(dst))), (*C.uint16_t)(unsafe.Pointer(unsafe.SliceData(src))), C.long(len(src)))
	return true
}
