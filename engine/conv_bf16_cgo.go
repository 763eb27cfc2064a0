//go:build cgo && amd64

package engine

/*
#cgo CFLAGS: -O3
#cgo noescape kiln_conv_bf16_pack_w
#cgo nocallback kiln_conv_bf16_pack_w
#cgo noescape kiln_bf16_pair_rows
#cgo nocallback kiln_bf16_pair_rows
#cgo noescape kiln_bf16_rows
#cgo nocallback kiln_bf16_rows
#cgo noescape kiln_conv_bf16_gemm_bx
#cgo nocallback kiln_conv_bf16_gemm_bx
#cgo noescape kiln_conv_bf16_pack_dout
#cgo nocallback kiln_conv_bf16_pack_dout
#cgo noescape kiln_conv_bf16_gemm_ax
#cgo nocallback kiln_conv_bf16_gemm_ax
#cgo noescape kiln_conv_amx_pack_w
#cgo nocallback kiln_conv_amx_pack_w
#cgo noescape kiln_conv_amx_bx
#cgo nocallback kiln_conv_amx_bx
#cgo noescape kiln_conv_amx_ax
#cgo nocallback kiln_conv_amx_ax
#include "bf16_cpu.h"
*/
import "C"

import (
	"fmt"
	"slices"
	"unsafe"
)

// The bf16 convolution's kernels (conv_bf16_cpu.c). Each wrapper checks,
// by indexing the last element it may touch, that its slices hold what the
// C loops read and write.

func cu32(s []uint32) *C.uint32_t { return (*C.uint32_t)(unsafe.Pointer(unsafe.SliceData(s))) }
func cu16(s []uint16) *C.uint16_t { return (*C.uint16_t)(unsafe.Pointer(unsafe.SliceData(s))) }

// convBF16PackW: ap gets m rows (in 8-row panels) of nch channels paired, taps taps.
func convBF16PackW(ap []uint32, w []float32, m, rs, nch, cs, taps int) {
	np := (nch + 1) / 2 * taps
	_ = ap[ceilDiv(m, convBF16Rows)*convBF16Rows*np-1]
	_ = w[(m-1)*rs+(nch-1)*cs+taps-1]
	C.kiln_conv_bf16_pack_w(cu32(ap), cptr(w), C.long(m), C.long(rs), C.long(nch), C.long(cs), C.long(taps))
}

func bf16PairRows(dst []uint32, dplane, drow int, src []float32, splane, srow, nplanes, nrows, rowlen int) {
	if nplanes == 0 || nrows == 0 || rowlen == 0 {
		return
	}
	_ = dst[((nplanes+1)/2-1)*dplane+(nrows-1)*drow+rowlen-1]
	_ = src[(nplanes-1)*splane+(nrows-1)*srow+rowlen-1]
	C.kiln_bf16_pair_rows(cu32(dst), C.long(dplane), C.long(drow), cptr(src), C.long(splane), C.long(srow),
		C.long(nplanes), C.long(nrows), C.long(rowlen))
}

func bf16Rows(dst []uint16, dplane, drow int, src []float32, splane, srow, nplanes, nrows, rowlen int) {
	if nplanes == 0 || nrows == 0 || rowlen == 0 {
		return
	}
	_ = dst[(nplanes-1)*dplane+(nrows-1)*drow+rowlen-1]
	_ = src[(nplanes-1)*splane+(nrows-1)*srow+rowlen-1]
	C.kiln_bf16_rows(cu16(dst), C.long(dplane), C.long(drow), cptr(src), C.long(splane), C.long(srow),
		C.long(nplanes), C.long(nrows), C.long(rowlen))
}

// convBF16GemmBx: c (m × n, ldc) = A·B (+ beta·c), B's pair-row p at x2[poff[p]:].
func convBF16GemmBx(m, n, np int, ap, x2 []uint32, poff []int32, c []float32, ldc int, beta float32) {
	if m == 0 || n == 0 {
		return
	}
	_ = ap[ceilDiv(m, convBF16Rows)*convBF16Rows*np-1]
	for _, o := range poff[:np] {
		_ = x2[int(o)+n-1]
		_ = x2[o]
	}
	_ = c[(m-1)*ldc+n-1]
	C.kiln_conv_bf16_gemm_bx(C.long(m), C.long(n), C.long(np), cu32(ap), cu32(x2), ci32(poff), cptr(c), C.long(ldc),
		C.float(beta))
}

// convBF16PackDout: bp gets the np words of m rows of dy (stride ldy)
// transposed into 32-column panels.
func convBF16PackDout(bp, dy []uint32, ldy, m, np int) {
	if m == 0 || np == 0 {
		return
	}
	_ = bp[ceilDiv(m, 32)*32*np-1]
	_ = dy[(m-1)*ldy+np-1]
	C.kiln_conv_bf16_pack_dout(cu32(bp), cu32(dy), C.long(ldy), C.long(m), C.long(np))
}

// convBF16GemmAx: c (m × n, ldc) = A·B (+ beta·c), A's row i the np pixel
// pairs at xb[aoff[i]:], B packed by convBF16PackDout.
func convBF16GemmAx(m, n, np int, xb []uint16, aoff []int32, bp []uint32, c []float32, ldc int, beta float32) {
	if m == 0 || n == 0 {
		return
	}
	for _, o := range aoff[:m] {
		_ = xb[int(o)+2*np-1]
		_ = xb[o]
	}
	_ = bp[ceilDiv(n, 32)*32*np-1]
	_ = c[(m-1)*ldc+n-1]
	C.kiln_conv_bf16_gemm_ax(C.long(m), C.long(n), C.long(np), cu16(xb), ci32(aoff), cu32(bp), cptr(c), C.long(ldc),
		C.float(beta))
}

// convAMXPackW: ap gets mp rows of taps·c2p words, the pairs tap-major.
func convAMXPackW(ap []uint32, w []float32, m, rs, nch, cs, taps, mp, c2p int) {
	_ = ap[mp*taps*c2p-1]
	_ = w[(m-1)*rs+(nch-1)*cs+taps-1]
	C.kiln_conv_amx_pack_w(cu32(ap), cptr(w), C.long(m), C.long(rs), C.long(nch), C.long(cs), C.long(taps),
		C.long(mp), C.long(c2p))
}

// convAMXBx: c[i·ldc + dst[k] + j] = bias16's row i (or 0) + Σ A·B over the
// chunks k of 16 columns, B's pair-row (t, c2) at x2[c2·bplane + toff[t] +
// src[k]:]; mp a multiple of 16, c2p of 16.
func convAMXBx(mp int, src, dst []int32, taps, c2p int, ap, x2 []uint32, bplane int, toff []int32, bias16,
	c []float32, ldc int) {
	if mp%16 != 0 || c2p%16 != 0 || len(src) != len(dst) || len(src) == 0 {
		panic(fmt.Sprintf("convAMXBx: mp %d, c2p %d, %d and %d chunks", mp, c2p, len(src), len(dst)))
	}
	_ = ap[mp*taps*c2p-1]
	maxSrc, maxDst := slices.Max(src), slices.Max(dst)
	for _, o := range toff[:taps] {
		_ = x2[(c2p-1)*bplane+int(o)+int(maxSrc)+15]
		_ = x2[int(o)+int(slices.Min(src))]
	}
	_ = c[(mp-1)*ldc+int(maxDst)+15]
	_ = c[slices.Min(dst)]
	var b16 *C.float
	if bias16 != nil {
		_ = bias16[mp*16-1]
		b16 = cptr(bias16)
	}
	C.kiln_conv_amx_bx(C.long(mp), C.long(len(src)), ci32(src), ci32(dst), C.long(taps), C.long(c2p), cu32(ap),
		cu32(x2), C.long(bplane), ci32(toff), b16, cptr(c), C.long(ldc))
}

// convAMXAx: c[(i·taps + t)·ldc + j] += Σ_p pair(xb[i·plane + toff[t] + 2p:])·B[p, j]
// for m channels and n output channels (multiples of 16) over np pairs (of 16),
// B packed by convBF16PackDout(…, n, np).
func convAMXAx(m, taps, n, np int, xb []uint16, plane int, toff []int32, bp []uint32, c []float32, ldc int) {
	if m%16 != 0 || n%16 != 0 || np%16 != 0 || ldc < n {
		panic(fmt.Sprintf("convAMXAx: m %d, n %d, np %d, ldc %d", m, n, np, ldc))
	}
	for _, o := range toff[:taps] {
		_ = xb[(m-1)*plane+int(o)+2*np-1]
		_ = xb[o]
	}
	_ = bp[ceilDiv(n, 32)*32*np-1]
	_ = c[((m-1)*taps+taps-1)*ldc+n-1]
	C.kiln_conv_amx_ax(C.long(m), C.long(taps), C.long(n), C.long(np), cu16(xb), C.long(plane), ci32(toff), cu32(bp),
		cptr(c), C.long(ldc))
}
