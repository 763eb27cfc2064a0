//go:build cgo && amd64

package engine

/*
#cgo CFLAGS: -O3
#cgo noescape kiln_conv_pack
#cgo nocallback kiln_conv_pack
#cgo noescape kiln_conv_flat_block
#cgo nocallback kiln_conv_flat_block
#cgo noescape kiln_conv_shift_gemm
#cgo nocallback kiln_conv_shift_gemm
#cgo noescape kiln_conv_shift_gemm_dx
#cgo nocallback kiln_conv_shift_gemm_dx
#cgo noescape kiln_conv_shift_dw
#cgo nocallback kiln_conv_shift_dw
#cgo noescape kiln_conv_shift_dwt
#cgo nocallback kiln_conv_shift_dwt
#cgo noescape kiln_conv_dyt
#cgo noescape kiln_conv_flat_gemm
#cgo nocallback kiln_conv_flat_gemm
#cgo noescape kiln_conv_flat_masks
#cgo noescape kiln_conv_flat_mask_bytes
#cgo nocallback kiln_conv_flat_mask_bytes
#cgo nocallback kiln_conv_flat_masks
#cgo noescape kiln_conv_copy_rows
#cgo nocallback kiln_conv_copy_rows
#cgo nocallback kiln_conv_dyt
#cgo noescape kiln_conv_add_row_sums
#cgo nocallback kiln_conv_add_row_sums
#cgo noescape kiln_conv_im2col
#cgo nocallback kiln_conv_im2col
#cgo noescape kiln_conv_col2im
#cgo nocallback kiln_conv_col2im
#cgo noescape kiln_wino_pack
#cgo nocallback kiln_wino_pack
#cgo noescape kiln_wino_conv
#cgo nocallback kiln_wino_conv
#cgo noescape kiln_wino_dw
#cgo nocallback kiln_wino_dw
#cgo noescape kiln_wino4_pack
#cgo nocallback kiln_wino4_pack
#cgo noescape kiln_wino4_conv
#cgo nocallback kiln_wino4_conv
#cgo noescape kiln_wino4_dw
#cgo nocallback kiln_wino4_dw
#include "conv_cpu.h"
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// haveConvFast says whether conv_cpu.c's AVX2 kernels run: the ISA level
// in use (isa.go) is AVX2 or higher.
func haveConvFast() bool { return atISA(isaAVX2) }

// convFastMaxK is the longest reduction (Cin/groups·KH·KW, or Cout/groups·
// KH·KW for the input gradient) the kernels take.
var convFastMaxK = int(C.kiln_conv_cpu_maxk())

// convLanes is the kernels' vector width at the ISA level in use, in floats:
// 8 (AVX2) or 16 (AVX-512). A product tile covers twice that many columns.
// A convolution reads it once and passes it to each kernel (shiftTaps.vl).
func convLanes() int { return int(C.kiln_conv_cpu_lanes()) }

// convPanel is the rows of a product tile at width vl: the panel height
// convPack packs the weights in.
func convPanel(vl int) int { return int(C.kiln_conv_cpu_panel(C.int(vl))) }

func fptr(s []float32) *C.float {
	if s == nil {
		return nil
	}
	return (*C.float)(unsafe.Pointer(unsafe.SliceData(s)))
}

// shiftTaps places the kernel taps: tap t = (t/kw, t%kw) reads plane r at
// r·ldbr + base + (t/kw)·sh + (t%kw)·sw; the products run vl floats wide.
type shiftTaps struct{ nr, nt, ldbr, kw, base, sh, sw, vl int }

// shiftSegs are the columns of one product: nrows runs of rowlen columns,
// each run brs further in b and crs (or ars) further in the other operand.
type shiftSegs struct{ nrows, rowlen, brs, crs int }

// convPack packs A(i, r, t) = a[i·si + r·sr + t] in mr-row panels, k over
// blocks of rb planes, tap-major inside each (1: k = r·nt + t; nr: k =
// t·nr + r; convFlatBlock for the flat paths).
func convPack(dst, a []float32, m, nr, nt, si, sr, rb, mr int) {
	C.kiln_conv_pack(fptr(dst), fptr(a), C.long(m), C.long(nr), C.long(nt), C.long(si), C.long(sr), C.long(rb), C.int(mr))
}

// convFlatBlock is how many planes the flat paths take a tap over at a time.
var convFlatBlock = int(C.kiln_conv_flat_block())

// convShiftGemmDx is convShiftGemm for the input gradient, row by row, with
// A packed tap-major and the kernel rows that read only margins skipped: t
// has the taps as KH rows of kw; ph, dh and oh place the output gradient's
// rows.
func convShiftGemmDx(c []float32, ldc, m int, ap, b []float32, t shiftTaps, khn int, s shiftSegs, ph, dh, oh int) {
	C.kiln_conv_shift_gemm_dx(fptr(c), C.long(ldc), C.long(m), fptr(ap), C.long(t.nr), C.long(khn), C.long(t.kw),
		fptr(b), C.long(len(b)), C.long(t.ldbr), C.long(t.base), C.long(t.sh), C.long(t.sw), C.long(s.nrows),
		C.long(s.rowlen), C.long(s.brs), C.long(s.crs), C.long(ph), C.long(dh), C.long(oh), C.int(t.vl))
}

func convShiftGemm(c []float32, ldc, m int, ap, b []float32, t shiftTaps, init []float32, s shiftSegs) {
	C.kiln_conv_shift_gemm(fptr(c), C.long(ldc), C.long(m), fptr(ap), C.long(t.nr), C.long(t.nt), fptr(b),
		C.long(len(b)), C.long(t.ldbr), C.long(t.kw), C.long(t.base), C.long(t.sh), C.long(t.sw), fptr(init),
		C.long(s.nrows), C.long(s.rowlen), C.long(s.brs), C.long(s.crs), C.int(t.vl))
}

// convOCGemm computes c (m × the segments' pixels, one run per row of c) =
// init + W·(b at the taps) with the output channels in the vector lanes,
// wp packed in 2·vl-row panels (convPack), tw pixels a tile, through yt
// (pixels × ldt).
func convOCGemm(c []float32, ldc, m int, wp, b []float32, t shiftTaps, init []float32, s shiftSegs, yt []float32, ldt, tw int) {
	_ = yt[s.nrows*s.rowlen*ldt-1]
	if C.kiln_conv_oc_gemm(fptr(c), C.long(ldc), C.long(m), fptr(wp), C.long(t.nr), C.long(t.nt), fptr(b),
		C.long(t.ldbr), C.long(t.kw), C.long(t.base), C.long(t.sh), C.long(t.sw), fptr(init), C.long(s.nrows),
		C.long(s.rowlen), C.long(s.brs), fptr(yt), C.long(ldt), C.long(tw), C.int(t.vl)) == 0 {
		panic(fmt.Sprintf("convOCGemm: k %d, m %d, ldt %d, tw %d at width %d", t.nr*t.nt, m, ldt, tw, t.vl))
	}
}

// flatTaps are a "same" stride-1 convolution's taps over unpadded h×w
// planes laid end to end (conv_cpu.c's flat_gemm): tap (i, j) reads at the
// flat offset (i − ph)·w + (j − pw), negated for the input gradient (neg), in
// the lanes of each vector that masks (flatMasksFor) marks as inside the
// plane; nr planes.
type flatTaps struct {
	nr, h, w, kh, kw, ph, pw, vl int
	neg                          bool
	masks                        []float32 // the C lane masks, in float32-sized words
}

// maskWords is the length in float32 words of t's mask table.
func (t *flatTaps) maskWords() int {
	return ceilDiv(int(C.kiln_conv_flat_mask_bytes(C.long(t.h), C.long(t.w), C.long(t.kh*t.kw), C.int(t.vl))), 4)
}

// fillMasks computes dst, maskWords long, as t's mask table.
func (t *flatTaps) fillMasks(dst []float32) {
	_ = dst[t.maskWords()-1]
	C.kiln_conv_flat_masks(unsafe.Pointer(unsafe.SliceData(dst)), C.long(t.h), C.long(t.w), C.long(t.kh),
		C.long(t.kw), C.long(t.ph), C.long(t.pw), cbool(t.neg), C.int(t.vl))
}

// convFlatGemm computes c (m × h·w, rows ldc apart) = init + A·(b's planes at
// the taps), A packed in blocks of convFlatBlock planes (convPack).
func convFlatGemm(c []float32, ldc, m int, ap, b []float32, t *flatTaps, init []float32) {
	C.kiln_conv_flat_gemm(fptr(c), C.long(ldc), C.long(m), fptr(ap), C.long(t.nr), C.long(t.kh), C.long(t.kw),
		C.long(t.ph), C.long(t.pw), cbool(t.neg), fptr(b), C.long(t.h*t.w), C.long(t.w),
		unsafe.Pointer(unsafe.SliceData(t.masks)), fptr(init), C.long(t.h*t.w), C.int(t.vl))
}

func convShiftDw(dw []float32, ldw, m int, a []float32, lda int, b []float32, t shiftTaps, s shiftSegs) {
	C.kiln_conv_shift_dw(fptr(dw), C.long(ldw), C.long(m), fptr(a), C.long(lda), C.long(t.nr), C.long(t.nt),
		fptr(b), C.long(t.ldbr), C.long(t.kw), C.long(t.base), C.long(t.sh), C.long(t.sw),
		C.long(s.nrows), C.long(s.rowlen), C.long(s.crs), C.long(s.brs), C.int(t.vl))
}

// convShiftDwt adds Xᵀ-shaped products into dwt (K × ldt) and, when db is not
// nil, the column sums of dyt (ldt wide) into db.
func convShiftDwt(dwt []float32, ldt int, db, dyt, b []float32, t shiftTaps, s shiftSegs) {
	C.kiln_conv_shift_dwt(fptr(dwt), C.long(ldt), fptr(db), fptr(dyt), C.long(ldt), C.long(t.nr), C.long(t.nt),
		fptr(b), C.long(t.ldbr), C.long(t.kw), C.long(t.base), C.long(t.sh), C.long(t.sw),
		C.long(s.nrows), C.long(s.rowlen), C.long(s.brs), C.int(t.vl))
}

// convTransposeOut writes dyt[q, co] = dy[co, q] for co < m (q = oh·OW + ow).
func convTransposeOut(dyt []float32, ldt int, dy []float32, m, oh, ow int) {
	C.kiln_conv_dyt(fptr(dyt), C.long(ldt), fptr(dy), C.long(m), C.long(oh), C.long(ow), C.long(ow))
}

// convAddRowSums adds to db[r] the sum of dy's row r of length n for r <
// len(db) (conv_cpu.c: 32 lanes, then a fixed tree).
func convAddRowSums(db, dy []float32, n int) {
	if len(db) == 0 || n == 0 {
		return
	}
	_ = dy[len(db)*n-1]
	C.kiln_conv_add_row_sums(fptr(db), fptr(dy), C.long(len(db)), C.long(n))
}

// convCopyRows copies np planes of nrows rows of rowlen floats from src to
// dst; rows and planes are the given strides apart on each side.
func convCopyRows(dst []float32, dplane, drow int, src []float32, splane, srow, np, nrows, rowlen int) {
	if np == 0 || nrows == 0 || rowlen == 0 {
		return
	}
	_ = dst[(np-1)*dplane+(nrows-1)*drow+rowlen-1]
	_ = src[(np-1)*splane+(nrows-1)*srow+rowlen-1]
	C.kiln_conv_copy_rows(fptr(dst), C.long(dplane), C.long(drow), fptr(src), C.long(splane), C.long(srow),
		C.long(np), C.long(nrows), C.long(rowlen))
}

// haveColC says im2col and col2im run conv_col_cpu.c's loops in float32
// (at every ISA level).
const haveColC = true

// im2colC is im2colGo in C: col (Cg·KH·KW rows ld floats apart, OH·OW)
// from the image group x.
func im2colC(col []float32, ld int, x []float32, g *convGeom) {
	_ = col[(g.kg-1)*ld+g.p-1]
	C.kiln_conv_im2col(fptr(col), C.long(ld), fptr(x),
		C.int(g.cg), C.int(g.h), C.int(g.w), C.int(g.oh), C.int(g.ow), C.int(g.kh), C.int(g.kw),
		C.int(g.sh), C.int(g.sw), C.int(g.ph), C.int(g.pw), C.int(g.dh), C.int(g.dw))
}

// col2imC is col2imGo in C: col added back into the image group dx.
func col2imC(dx, col []float32, ld int, g *convGeom) {
	_ = col[(g.kg-1)*ld+g.p-1]
	C.kiln_conv_col2im(fptr(dx), fptr(col), C.long(ld),
		C.int(g.cg), C.int(g.h), C.int(g.w), C.int(g.oh), C.int(g.ow), C.int(g.kh), C.int(g.kw),
		C.int(g.sh), C.int(g.sw), C.int(g.ph), C.int(g.pw), C.int(g.dh), C.int(g.dw))
}

// winoScratch is the floats convWino needs for k input and m output planes
// of h×w, by F(tile×tile, 3×3) (tile 2 or 4).
func winoScratch(tile, k, m, h, w int) int {
	if tile == 4 {
		return int(C.kiln_wino4_scratch(C.long(k), C.long(m), C.long(h), C.long(w)))
	}
	return int(C.kiln_wino_scratch(C.long(k), C.long(m), C.long(h), C.long(w)))
}

// winoPack writes the Winograd-transformed weights of an m × k product
// (row i, column r: the 3×3 kernel at w[i·si + r·sr:], turned 180° when
// flip) as mr-row panels for convWino: winoPositions(tile)·⌈m/mr⌉·mr·k
// floats.
func winoPack(tile int, dst, w []float32, m, k, si, sr int, flip bool, mr int) {
	_ = dst[winoPositions(tile)*ceilDiv(m, mr)*mr*k-1]
	_ = w[(m-1)*si+(k-1)*sr+8]
	if tile == 4 {
		C.kiln_wino4_pack(fptr(dst), fptr(w), C.long(m), C.long(k), C.long(si), C.long(sr), cbool(flip), C.int(mr))
		return
	}
	C.kiln_wino_pack(fptr(dst), fptr(w), C.long(m), C.long(k), C.long(si), C.long(sr), cbool(flip), C.int(mr))
}

// convWino writes n images' y (m planes of h×w, ys floats apart) as the
// 3×3 same convolution of x (k planes, xs apart) with u (winoPack) plus bias
// (nil for none), by F(tile×tile, 3×3).
func convWino(tile int, y []float32, ys int, x []float32, xs, n int, u, bias, scratch []float32, k, m, h, w, vl int) {
	_ = y[(n-1)*ys+m*h*w-1]
	_ = x[(n-1)*xs+k*h*w-1]
	_ = scratch[winoScratch(tile, k, m, h, w)-1]
	if bias != nil {
		_ = bias[m-1]
	}
	if tile == 4 {
		C.kiln_wino4_conv(fptr(y), C.long(ys), fptr(x), C.long(xs), C.long(n), fptr(u), fptr(bias), C.long(k),
			C.long(m), C.long(h), C.long(w), fptr(scratch), C.int(vl))
		return
	}
	for i := range n {
		C.kiln_wino_conv(fptr(y[i*ys:]), fptr(x[i*xs:]), fptr(u), fptr(bias), C.long(k), C.long(m), C.long(h),
			C.long(w), fptr(scratch), C.int(vl))
	}
}

// winoDwScratch is the floats convWinoDw needs, dUᵀ rows ldt wide.
func winoDwScratch(tile, k, m, h, w, ldt int) int {
	if tile == 4 {
		return int(C.kiln_wino4_dw_scratch(C.long(k), C.long(m), C.long(h), C.long(w), C.long(ldt)))
	}
	return int(C.kiln_wino_dw_scratch(C.long(k), C.long(m), C.long(h), C.long(w), C.long(ldt)))
}

// convWinoDw adds n images' Winograd weight gradient to du
// (winoPositions(tile) positions × k rows × ldt, dUᵀ: kiln_wino_dw) from x (k
// planes of h×w, xs floats apart) and dy (m planes, ys apart).
func convWinoDw(tile int, du []float32, ldt int, x []float32, xs int, dy []float32, ys, n int, scratch []float32,
	k, m, h, w, vl int) {
	_ = du[winoPositions(tile)*k*ldt-1]
	_ = x[(n-1)*xs+k*h*w-1]
	_ = dy[(n-1)*ys+m*h*w-1]
	_ = scratch[winoDwScratch(tile, k, m, h, w, ldt)-1]
	if tile == 4 {
		C.kiln_wino4_dw(fptr(du), C.long(ldt), fptr(x), C.long(xs), fptr(dy), C.long(ys), C.long(n), C.long(k),
			C.long(m), C.long(h), C.long(w), fptr(scratch), C.int(vl))
		return
	}
	for i := range n {
		C.kiln_wino_dw(fptr(du), C.long(ldt), fptr(x[i*xs:]), fptr(dy[i*ys:]), C.long(k), C.long(m), C.long(h),
			C.long(w), fptr(scratch), C.int(vl))
	}
}
