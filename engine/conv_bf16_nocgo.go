//go:build !cgo || !amd64

package engine

// No bf16 arithmetic here (CPUHasBF16 is false), so the bf16 convolution's
// kernels are never reached.

func convBF16PackW(ap []uint32, w []float32, m, rs, nch, cs, taps int) { panic("no bf16 kernels") }

func bf16PairRows(dst []uint32, dplane, drow int, src []float32, splane, srow, nplanes, nrows, rowlen int) {
	panic("no bf16 kernels")
}

func bf16Rows(dst []uint16, dplane, drow int, src []float32, splane, srow, nplanes, nrows, rowlen int) {
	panic("no bf16 kernels")
}

func convBF16GemmBx(m, n, np int, ap, x2 []uint32, poff []int32, c []float32, ldc int, beta float32) {
	panic("no bf16 kernels")
}

func convBF16PackDout(bp, dy []uint32, ldy, m, np int) { panic("no bf16 kernels") }

func convBF16GemmAx(m, n, np int, xb []uint16, aoff []int32, bp []uint32, c []float32, ldc int, beta float32) {
	panic("no bf16 kernels")
}

func convAMXPackW(ap []uint32, w []float32, m, rs, nch, cs, taps, mp, c2p int) {
	panic("no bf16 kernels")
}

func convAMXBx(mp int, src, dst []int32, taps, c2p int, ap, x2 []uint32, bplane int, toff []int32, bias16,
	c []float32, ldc int) {
	panic("no bf16 kernels")
}

func convAMXAx(m, taps, n, np int, xb []uint16, plane int, toff []int32, bp []uint32, c []float32, ldc int) {
	panic("no bf16 kernels")
}
