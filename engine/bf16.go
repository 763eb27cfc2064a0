package engine

import (
	"fmt"
	"math"
	"os"
	"strings"
)

// bfloat16, the upper half of a float32, is what the mixed-precision paths
// will compute in (issue 13). Kiln rounds float32 to bf16 one way on every
// path: the Go reference here, the C loop and the CPU's AVX512_BF16
// instruction (bf16_cpu.c), and the CUDA and emulator kernels to come. The
// rule is VCVTNEPS2BF16's, so the hardware can run it: round to nearest
// even; a zero or denormal gives a zero of its sign; an infinity stays; a
// NaN keeps its sign and upper payload and is made quiet. (PyTorch's own
// rounding keeps bf16 denormals and turns every NaN into 0x7fc0.)

// Bfloat16 holds a bfloat16 value's bits.
type Bfloat16 uint16

// ToBF16 rounds f to bfloat16.
func ToBF16(f float32) Bfloat16 {
	b := math.Float32bits(f)
	switch exp := b >> 23 & 0xff; {
	case exp == 0: // zero or denormal
		return Bfloat16(b >> 16 & 0x8000)
	case exp == 0xff && b&0x7fffff != 0: // NaN: quiet, sign and payload kept
		return Bfloat16(b>>16 | 0x40)
	case exp == 0xff: // infinity
		return Bfloat16(b >> 16)
	}
	return Bfloat16((b + 0x7fff + (b >> 16 & 1)) >> 16) // a carry past the mantissa rounds up
}

// Float32 widens h, exactly.
func (h Bfloat16) Float32() float32 { return math.Float32frombits(uint32(h) << 16) }

// ToBF16Slice rounds each element of src into dst, which must be as long.
func ToBF16Slice(dst []Bfloat16, src []float32) error {
	if len(dst) != len(src) {
		return fmt.Errorf("ToBF16Slice: dst has %d elements, src %d", len(dst), len(src))
	}
	if !toBF16C(dst, src) {
		for i, f := range src {
			dst[i] = ToBF16(f)
		}
	}
	return nil
}

// BF16ToFloat32Slice widens each element of src into dst, which must be as
// long.
func BF16ToFloat32Slice(dst []float32, src []Bfloat16) error {
	if len(dst) != len(src) {
		return fmt.Errorf("BF16ToFloat32Slice: dst has %d elements, src %d", len(dst), len(src))
	}
	if !fromBF16C(dst, src) {
		for i, h := range src {
			dst[i] = h.Float32()
		}
	}
	return nil
}

// CPUHasBF16 reports whether this CPU converts and multiplies bf16 in
// hardware (AVX512_BF16) and the ISA level in use lets Kiln use it.
func CPUHasBF16() bool { return cpuBF16() }

// CPUHasAMX reports whether bf16 products run on AMX tiles (AMX-BF16, with
// the tile state granted by the kernel, and not turned off by
// $KILN_CPU_AMX), which CPUHasBF16 implies.
func CPUHasAMX() bool { return cpuAMX() }

// amxEnvErr is why $KILN_CPU_AMX was refused, if it was; amxEnvOff, that
// it turned AMX off.
var (
	amxEnvErr error
	amxEnvOff bool
)

// $KILN_CPU_AMX=off keeps bf16 products off AMX's tiles, on AVX512_BF16
// alone (Zen 4's path, run on a Xeon to compare).
func init() {
	switch v := strings.ToLower(strings.TrimSpace(os.Getenv("KILN_CPU_AMX"))); v {
	case "", "on", "1":
	case "off", "0":
		amxEnvOff = true
		useAMX(false)
	default:
		amxEnvErr = fmt.Errorf("$KILN_CPU_AMX: %q: want off (bf16 products on AVX512_BF16 alone) or on", v)
	}
}

// CPUAMXEnvError is why $KILN_CPU_AMX was refused (not on or off), nil when
// it was applied or not set.
func CPUAMXEnvError() error { return amxEnvErr }

// CPUAMXOff reports whether $KILN_CPU_AMX turned AMX off.
func CPUAMXOff() bool { return amxEnvOff }

// sgemmBF16 is gemm's float32 product with A and B rounded to bf16 and the
// products summed in float32 (gemm_bf16_cpu.c), split over the threads
// unless inPart (as gemmIn): by 32-column tiles, or by 64-row blocks when C
// has more rows than columns, so that each thread packs its own share of
// the larger operand rather than all of it. False, having done nothing,
// where this CPU has no bf16 arithmetic (CPUHasBF16).
func sgemmBF16(inPart, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int,
	beta float32, c []float32, ldc int) bool {
	return sgemmBF16Bias(inPart, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, nil)
}

// sgemmBF16Bias is sgemmBF16, then bias (n, or nil) added to each row of C
// as sgemmBias adds it.
func sgemmBF16Bias(inPart, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32,
	ldb int, beta float32, c []float32, ldc int, bias []float32) bool {
	if !CPUHasBF16() {
		return false
	}
	checkBF16GemmArgs(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if bias != nil && len(bias) < n {
		panic(fmt.Sprintf("engine: bf16 product bias of %d for %d columns", len(bias), n))
	}
	t := bf16GemmTasks.Get().(*bf16GemmTask)
	*t = bf16GemmTask{transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b,
		ldb: ldb, beta: beta, c: c, ldc: ldc, bias: bias}
	if !inPart && bf16SplitsK(m, n, k) {
		t.splitK(Threads())
		*t = bf16GemmTask{}
		bf16GemmTasks.Put(t)
		return true
	}
	t.byRows = m > n
	tiles := ceilDiv(n, bf16TileCols)
	if t.byRows {
		tiles = ceilDiv(m, bf16TileRows)
	}
	if inPart || m*n*k < 1<<19 {
		t.run(0, 0, tiles)
	} else {
		parallelFor(tiles, t)
	}
	*t = bf16GemmTask{}
	bf16GemmTasks.Put(t)
	return true
}

var bf16GemmTasks = taskPool{New: func() any { return new(bf16GemmTask) }}

// bf16SplitsK: a long reduction into a small C (a weight gradient: gMLP's
// 256×128×8192) is split along K on AMX, where the tile products are fast
// enough that packing is most of the work: split along M or N every part
// packed all of the other operand. The parts' sums are added in part order:
// the same bits for a given thread count (as sgemm's K split).
func bf16SplitsK(m, n, k int) bool {
	return Threads() > 1 && CPUHasAMX() && m*n <= 1<<16 && k >= 2048
}

// splitK runs the product as parts of K, whole slices of bf16KSlice values:
// part 0 into C (with beta), the others into scratch, added to C in order,
// then the bias.
func (t *bf16GemmTask) splitK(threads int) {
	t.kParts = min(threads, ceilDiv(t.k, bf16KSlice))
	t.partial = takeScratchUnzeroed((t.kParts - 1) * t.m * t.n)
	parallelFor(t.kParts, t)
	sgemmSumParts(t.kParts, t.m, t.n, t.partial, t.c, t.ldc, t.bias)
	giveScratch(t.partial)
}

// runK computes part's share of K (whole slices, as the product's own K
// loop takes them).
func (t *bf16GemmTask) runK(part int) {
	ks := ceilDiv(t.k, bf16KSlice)
	p0, p1 := part*ks/t.kParts*bf16KSlice, min((part+1)*ks/t.kParts*bf16KSlice, t.k)
	a, b := t.a[p0:], t.b[p0:] // A's row p0 in place, or column p0 of a transposed A; B's the other way
	if t.transA {
		a = t.a[p0*t.lda:]
	}
	if !t.transB {
		b = t.b[p0*t.ldb:]
	}
	c, ldc, beta := t.c, t.ldc, t.beta
	if part > 0 {
		c, ldc, beta = t.partial[(part-1)*t.m*t.n:], t.n, 0
	}
	sgemmBF16C(t.transA, t.transB, t.m, t.n, p1-p0, t.alpha, a, t.lda, b, t.ldb, beta, c, ldc, nil)
}

// Parts split the columns on the bf16 tile's width, the rows on a multiple
// of every tile's height (8, and AMX's 32).
const (
	bf16TileCols = 32
	bf16TileRows = 64
	bf16KSlice   = 256 // the product's K block (AKC in gemm_bf16_cpu.c)
)

type bf16GemmTask struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a, b, c, bias  []float32
	lda, ldb, ldc  int
	byRows         bool
	kParts         int       // a K split's parts (splitK), else 0
	partial        []float32 // parts 1… of a K split, m×n each
}

func (t *bf16GemmTask) run(_, lo, hi int) {
	if t.kParts > 0 {
		for part := lo; part < hi; part++ {
			t.runK(part)
		}
		return
	}
	if t.byRows {
		i0, i1 := lo*bf16TileRows, min(hi*bf16TileRows, t.m)
		if i0 >= i1 {
			return
		}
		a := t.a[i0:] // A stored k×m: its column i0
		if !t.transA {
			a = t.a[i0*t.lda:]
		}
		sgemmBF16C(t.transA, t.transB, i1-i0, t.n, t.k, t.alpha, a, t.lda, t.b, t.ldb, t.beta, t.c[i0*t.ldc:], t.ldc,
			t.bias)
		return
	}
	j0, j1 := lo*bf16TileCols, min(hi*bf16TileCols, t.n)
	if j0 >= j1 {
		return
	}
	b := t.b[j0:]
	if t.transB {
		b = t.b[j0*t.ldb:]
	}
	var bias []float32
	if t.bias != nil {
		bias = t.bias[j0:]
	}
	sgemmBF16C(t.transA, t.transB, t.m, j1-j0, t.k, t.alpha, t.a, t.lda, b, t.ldb, t.beta, t.c[j0:], t.ldc, bias)
}

// roundBF16Slice writes src rounded to bf16 (ToBF16's rule) and widened
// back into dst, which may be src; long slices over the threads.
func roundBF16Slice(dst, src []float32) {
	if len(src) < 1<<16 {
		roundBF16Run(dst, src)
		return
	}
	t := bf16RoundTasks.Get().(*bf16RoundTask)
	t.dst, t.src = dst, src
	parallelFor(len(src), t)
	*t = bf16RoundTask{}
	bf16RoundTasks.Put(t)
}

type bf16RoundTask struct{ dst, src []float32 }

var bf16RoundTasks = taskPool{New: func() any { return new(bf16RoundTask) }}

func (t *bf16RoundTask) run(_, lo, hi int) { roundBF16Run(t.dst[lo:hi], t.src[lo:hi]) }

func roundBF16Run(dst, src []float32) {
	if roundBF16C(dst, src) {
		return
	}
	for i, v := range src {
		dst[i] = ToBF16(v).Float32()
	}
}

// RoundBF16 writes each element of x rounded to bfloat16 (ToBF16's rule) and
// widened back into out, which may be x: the rounding every bf16 product
// applies to its inputs, the same bits on the CPU, the GPU and the emulator.
func RoundBF16(out, x *Tensor) error {
	const op = "RoundBF16"
	dev, dt, err := agreeDev(op, out, x)
	if err != nil {
		return err
	}
	if out.Len() != x.Len() {
		return shapeErr(op, "element counts differ", "out", out, "x", x)
	}
	if dev == CUDA {
		return roundBF16CUDA(out, x)
	}
	if dt == Float32 {
		roundBF16Slice(out.f32, x.f32)
		return nil
	}
	for i, v := range x.f64 {
		out.f64[i] = float64(ToBF16(float32(v)).Float32())
	}
	return nil
}
