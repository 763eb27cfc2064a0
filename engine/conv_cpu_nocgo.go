//go:build !cgo || !amd64

package engine

func haveConvFast() bool { return false }

const convFastMaxK = 0

func convLanes() int { return 8 }

func convPanel(vl int) int { return 6 }

type shiftTaps struct{ nr, nt, ldbr, kw, base, sh, sw, vl int }

type shiftSegs struct{ nrows, rowlen, brs, crs int }

func convPack(dst, a []float32, m, nr, nt, si, sr, rb, mr int) {}

const convFlatBlock = 8

func convShiftGemmDx(c []float32, ldc, m int, ap, b []float32, t shiftTaps, khn int, s shiftSegs, ph, dh, oh int) {
}

func convShiftGemm(c []float32, ldc, m int, ap, b []float32, t shiftTaps, init []float32, s shiftSegs) {
}

func convShiftDw(dw []float32, ldw, m int, a []float32, lda int, b []float32, t shiftTaps, s shiftSegs) {
}

func convShiftDwt(dwt []float32, ldt int, db, dyt, b []float32, t shiftTaps, s shiftSegs) {}

func convTransposeOut(dyt []float32, ldt int, dy []float32, m, oh, ow int) {}

func convAddRowSums(db, dy []float32, n int) {
	for r := range db {
		db[r] += sumSlice(dy[r*n : (r+1)*n])
	}
}

// convCopyRows is conv_cpu_cgo.go's in Go (the batched col lowering's
// copies, should a build without the C GEMM take it).
func convCopyRows(dst []float32, dplane, drow int, src []float32, splane, srow, np, nrows, rowlen int) {
	for p := range np {
		for y := range nrows {
			d, s := p*dplane+y*drow, p*splane+y*srow
			copy(dst[d:d+rowlen], src[s:s+rowlen])
		}
	}
}

type flatTaps struct {
	nr, h, w, kh, kw, ph, pw, vl int
	neg                          bool
	masks                        []float32
}

func (t *flatTaps) maskWords() int { return 0 }

func (t *flatTaps) fillMasks(dst []float32) {}

func convFlatGemm(c []float32, ldc, m int, ap, b []float32, t *flatTaps, init []float32) {}

const haveColC = false

func im2colC(col []float32, ld int, x []float32, g *convGeom) {}

func col2imC(dx, col []float32, ld int, g *convGeom) {}

func winoScratch(tile, k, m, h, w int) int { return 0 }

func winoPack(tile int, dst, w []float32, m, k, si, sr int, flip bool, mr int) {}

func convWino(tile int, y []float32, ys int, x []float32, xs, n int, u, bias, scratch []float32, k, m, h, w, vl int) {
}

func winoDwScratch(tile, k, m, h, w, ldt int) int { return 0 }

func convWinoDw(tile int, du []float32, ldt int, x []float32, xs int, dy []float32, ys, n int, scratch []float32,
	k, m, h, w, vl int) {
}

func convOCGemm(c []float32, ldc, m int, wp, b []float32, t shiftTaps, init []float32, s shiftSegs, yt []float32, ldt, tw int) {
}
