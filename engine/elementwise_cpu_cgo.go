//go:build cgo && amd64

package engine

/*
#cgo CFLAGS: -O3
#cgo noescape kiln_add_f32
#cgo nocallback kiln_add_f32
#cgo noescape kiln_scale_f32
#cgo nocallback kiln_scale_f32
#cgo noescape kiln_add_row_bias_f32
#cgo nocallback kiln_add_row_bias_f32
#cgo noescape kiln_sum_rows_f32
#cgo nocallback kiln_sum_rows_f32
#include "elementwise_cpu.h"
*/
import "C"

// addC computes out = a + b in elementwise_cpu.c for float32 and reports
// true; false for float64. out and b are at least as long as a.
func addC[T Float](out, a, b []T) bool {
	if isFloat64[T]() || len(a) == 0 {
		return false
	}
	C.kiln_add_f32(cf32(out), cf32(a), cf32(b), C.long(len(a)))
	return true
}

// scaleC computes x *= s in elementwise_cpu.c for float32 and reports true;
// false for float64.
func scaleC[T Float](x []T, s T) bool {
	if isFloat64[T]() || len(x) == 0 {
		return false
	}
	C.kiln_scale_f32(cf32(x), C.long(len(x)), C.float(s))
	return true
}

// addRowBiasC adds b (o) to each of the n rows of out (n, o) in
// elementwise_cpu.c for float32 and reports true; false for float64.
func addRowBiasC[T Float](out, b []T, n, o int) bool {
	if isFloat64[T]() || n == 0 || o == 0 {
		return false
	}
	C.kiln_add_row_bias_f32(cf32(out), C.long(o), cf32(b), C.long(n), C.long(o))
	return true
}

// sumRowsC adds the n rows of dout (n, o) into db (o), row by row, in
// elementwise_cpu.c for float32 and reports true; false for float64.
func sumRowsC[T Float](db, dout []T, n, o int) bool {
	if isFloat64[T]() || n == 0 || o == 0 {
		return false
	}
	C.kiln_sum_rows_f32(cf32(db), cf32(dout), C.long(n), C.long(o))
	return true
}
