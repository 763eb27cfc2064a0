package engine

// The convolution's fast CPU path, float32 on amd64 with AVX2 and FMA (ymm,
// 6-row tiles) or AVX-512 (zmm, 8-row tiles; the same bits), for
// the stride-1 shapes whose wide frame is small (convGeom.wide): the C
// kernels of conv_cpu.c read the input in place at each kernel tap's offset
// (an implicit GEMM), where conv.go's col lowering copies Cg·KH·KW shifted
// runs into a col matrix that the GEMM then packs again. On the zoo's shapes
// it takes 0.05–0.8 of col's time (col with the C sgemm), the small-channel
// layers (LeNet's, CBAM's 7×7 spatial attention) the least; one pass, the
// backward of cnn's 3→32-channel 3×3 stem, takes twice col's:
// bench/results/*-conv-lowerings.md, table E.
//
//   - forward: out[co, ·] = b[co] + Σ_(c,tap) W[co, c, tap] · xp[c, tap offset + ·],
//     written row by row straight into out, or over the wide frame and then
//     narrowed, whichever computes fewer columns; or, for a "same"
//     convolution (output the input's size) whose rows are not whole tiles,
//     over the unpadded planes laid flat, each tap's reads outside the plane
//     masked to zero in the vector lanes (flat_gemm: no padded copy, no junk
//     columns; cnn's 28×28 and 14×14 layers); or, where rows are short and
//     the output channels fill two vectors (at AVX2: LeNet's second layer,
//     rows of 12 or 10 and 16 channels; on Zen 4 one zmm of them too), with
//     the channels in the lanes and a few pixels of a row a tile, then
//     transposed into the planes (oc_gemm, ocLanesPay);
//   - weight gradient: dwᵀ[(c, tap), co] += Σ_q xp[c, tap offset + q] · doutᵀ[q, co]
//     over the output pixels q, with dout transposed per image (Cout padded
//     to a multiple of 8) and dwᵀ kept per part for the whole call, so the
//     register tiles never need a horizontal sum; the bias gradient is the
//     column sums of doutᵀ;
//   - input gradient: the full correlation of dout, laid out in the wide frame
//     with zero margins of the largest tap offset on both sides, with the
//     weights transposed per tap: dx[c, p] = Σ_(co,tap) W[co, c, tap] ·
//     doutp[co, p + maxoff − tap offset], written straight into dx; or flat
//     over dout itself where the forward is flat.
//
// A 3×3 "same" shape with enough channels on wide enough planes (winoPays)
// runs its forward, input gradient and weight gradient by Winograd's
// F(2×2, 3×3) instead (conv_wino_cpu.c): 16 products a 2×2 block of outputs
// where the sums above take 36. On planes where it takes fewer products
// (winoTileFor: 15×15 and larger) all three take F(4×4, 3×3)
// (conv_wino4_cpu.c): 36 products a 4×4 block.
//
// Images are split over threads as in conv2D, each part summing dw and db
// into its own buffer, added in part order afterwards; every element is a
// fixed chain of FMAs, so results are bit-identical run after run.

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
)

type convFastTask struct {
	g          convGeom
	backward   bool
	y, x, w, b []float32 // y is out in forward, dout in backward
	dx, dw, db []float32
	scratch    []float32
	l          convFastLayout
	// ap holds, per group, W packed in mr-row panels for forward, or Wᵀ per tap
	// for the input gradient; apGroup is one group's length.
	ap      []float32
	apGroup int
	// fwdRows: forward writes out row by row (else wide frame, then narrow).
	// dwT: the weight gradient goes through doutᵀ (else dot products of dout
	// rows, better for few output channels); dwRows: those dot products run
	// over the output rows (else the wide frame).
	fwdRows, dwT, dwRows bool
	// dxSkip: the input gradient runs row by row, skipping the kernel rows
	// that read only margins, worth it when they are a tenth of the work or
	// more (else row by row with padding, one run over the plane without).
	dxSkip bool
	// flat: a "same" stride-1 shape (output the input's size) whose forward,
	// and input gradient unless dxSkip, read the unpadded planes under lane
	// masks (conv_cpu.c's flat_gemm): no padded copy, no junk columns, no
	// wide output gradient; ft places its taps.
	flat bool
	ft   flatTaps
	// wino: a 3×3 "same" shape whose forward, or input gradient, runs by
	// Winograd (winoTile says which tiling). ap then holds the transformed
	// weights.
	wino bool
	// winoTile: wino's and winoDw's output tile, 2 (F(2×2, 3×3)) or 4
	// (F(4×4, 3×3), conv_wino4_cpu.c: 36 products a 4×4 block), by
	// winoTileFor.
	winoTile int
	// winoDw: the weight gradient by Winograd too (kiln_wino_dw,
	// kiln_wino4_dw): each part sums dUᵀ (16 or 36 positions × Cg × ldt per
	// group) in its dw buffer, and sumParts turns the parts' sum into dw.
	winoDw bool
	// fwdOC: forward with the output channels in the vector lanes and a few
	// pixels a tile (conv_cpu.c's oc_gemm, ocLanesPay), ap then packed in
	// panels of 2·vl channels; the same bits as the row path.
	fwdOC        bool
	vl, mr       int // the kernels' vector width and tile rows (convLanes, convPanel)
	taps, maxOff int // KH·KW; largest tap offset in the wide frame
	dyLen        int // one channel of the zero-margined wide dout
	ldt          int // Cout/groups rounded up to 8: the row length of doutᵀ and dwᵀ
}

// convFastLayout places one part's scratch; each field is an offset, the
// next one's offset its end.
type convFastLayout struct {
	pad, yb, dyp, dyt, dw, db, wino, size int // dw: dwᵀ (groups × K × ldt); db: groups × ldt
}

var convFastTasks = taskPool{New: func() any { return new(convFastTask) }}

// convFastFor reports whether the float32 kernels take g: the reductions fit
// the kernels' offset tables and every offset fits an int32.
func convFastFor(g *convGeom) bool {
	if !haveConvFast() || !g.wide || g.kg > convFastMaxK || g.mg*g.kh*g.kw > convFastMaxK {
		return false
	}
	maxOff := (g.kh-1)*g.dh*g.wp + (g.kw-1)*g.dw
	return g.cg*g.hp*g.wp < 1<<30 && g.mg*(g.nw+2*maxOff) < 1<<30
}

// conv2DFast runs conv2D's work through conv_cpu.c and reports true, or
// reports false (float64, no AVX2, not a wide shape) and does nothing.
func conv2DFast[T Float](g *convGeom, backward bool, y, x, w, b, dx, dw, db []T) bool {
	if isFloat64[T]() || !convFastFor(g) {
		return false
	}
	t := convFastTasks.Get().(*convFastTask)
	t.g, t.backward = *g, backward
	t.y, t.x, t.w, t.b = asF32(y), asF32(x), asF32(w), asF32(b)
	t.dx, t.dw, t.db = asF32(dx), asF32(dw), asF32(db)
	if b == nil {
		t.b = nil
	}
	if dx == nil {
		t.dx = nil
	}
	if dw == nil {
		t.dw = nil
	}
	if db == nil {
		t.db = nil
	}
	t.plan(g)
	t.l = t.layout(g)
	np := parts(g.n)
	t.packWeights(g, np)
	if t.flat {
		t.ft.masks = flatMasksFor(&t.ft)
	}
	parallelFor(g.n, t)
	if backward {
		t.sumParts(g, np)
	}
	giveScratch(t.scratch)
	*t = convFastTask{}
	convFastTasks.Put(t)
	return true
}

// plan chooses, from g's shape, how each pass computes: rows or long runs,
// a transposed weight gradient, the input gradient's skipped taps.
func (t *convFastTask) plan(g *convGeom) {
	t.taps = g.kh * g.kw
	t.maxOff = (g.kh-1)*g.dh*g.wp + (g.kw-1)*g.dw
	t.dyLen = g.nw + 2*t.maxOff
	// Columns computed: two vectors per tile in products (rows of one vector
	// or less go two to a tile), one vector at a time in dot products.
	t.vl = convLanes()
	t.mr = convPanel(t.vl)
	vl := t.vl
	rowTiles := g.oh * ceilDiv(g.ow, 2*vl)
	if g.ow <= vl {
		rowTiles = ceilDiv(g.oh, 2)
	}
	t.fwdRows = rowTiles <= ceilDiv(g.nw, 2*vl)
	t.ldt = ceilDiv(g.mg, 8) * 8
	t.dwT = g.mg >= 16
	t.dwRows = g.oh*ceilDiv(g.ow, vl) <= ceilDiv(g.nw, vl)
	t.dxSkip = 10*dxRowTaps(g) <= 9*g.h*g.kh
	// Flat where rows are not whole tiles at both widths (32 columns): there
	// the row path wastes lanes and the wide frame computes junk columns.
	// Rows of whole tiles keep the row path, which needs no masks (at AVX2 a
	// third of the flat tile's loads), and so do products over fewer planes
	// than a block, whose masks per tap would cost more than the product
	// (LeNet's 1-channel 5×5 stem: its step 10% slower), and planes whose
	// mask table would be large (a ymm of mask per 8 pixels and tap: 256 KiB
	// at flatMaxPixelTaps). The choice is the shape's alone, so AVX2 and
	// AVX-512 still give the same bits.
	same := g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 && g.oh == g.h && g.ow == g.w
	planes := g.cg // the product's k runs over these planes, times the taps
	if t.backward {
		planes = g.mg
	}
	t.flat = g.padded && same && g.w%32 != 0 && planes >= convFlatBlock && g.inPlane*t.taps <= flatMaxPixelTaps &&
		(!t.backward || t.dx != nil && !t.dxSkip)
	if t.flat {
		t.ft = flatTaps{nr: planes, h: g.h, w: g.w, kh: g.kh, kw: g.kw, ph: g.ph, pw: g.pw, vl: vl, neg: t.backward}
	}
	t.wino = winoFor(g, t.backward, t.dx != nil)
	if t.wino {
		t.flat = false
	}
	t.fwdOC = !t.backward && !t.flat && !t.wino && ocLanesFor(g, vl, t.mr, t.fwdRows)
	t.winoDw = t.backward && t.dw != nil && winoShape(g, g.cg, g.mg)
	if t.wino || t.winoDw {
		t.winoTile = winoTileFor(g.h, g.w)
	}
}

// ocLd is the row length of fwdOC's pixel-major output: the channels in
// whole vectors.
func (t *convFastTask) ocLd() int { return ceilDiv(t.g.mg, t.vl) * t.vl }

// convOCLanes forces fwdOC's choice in tests: ocAuto (ocLanesPay), ocOff,
// ocAlways (every forward on the row or wide path).
var convOCLanes atomic.Int32

const (
	ocAuto = iota
	ocOff
	ocAlways
)

// zmmSplit is cpuZMMSplit, settable for tests.
var zmmSplit atomic.Bool

func init() { zmmSplit.Store(cpuZMMSplit()) }

// ocLanesFor says whether a forward that would run rows or the wide frame
// runs with the output channels in the lanes instead.
func ocLanesFor(g *convGeom, vl, mr int, rows bool) bool {
	switch convOCLanes.Load() {
	case ocOff:
		return false
	case ocAlways:
		return true
	}
	return ocLanesPay(g, vl, mr, rows)
}

// ocLanesPay compares the multiply-adds each way computes, lanes and tile
// rows past the shape's included: the row path's tiles are mr channels by
// two vectors of a row (one vector at a row's tail; short rows two to a
// tile), or the wide frame's junk columns; oc_gemm's are ocWidth pixels of a
// row by two vectors of channels. It pays where it computes at most 0.8 as
// much (its pixel-major tiles are transposed into the planes after), and
// only where the channels fill two vectors, but for zmm vectors on a CPU
// that splits them (zmmSplit): with one vector each FMA waits on a
// broadcast load of its own, which starves cores that issue two FMAs a
// cycle (AVX-512 on LeNet's 16 channels: 0.8-0.9 of the row path's rate,
// Emerald Rapids) and not Zen 4, which issues one zmm FMA a cycle
// (1.3-1.4× the row path's rate there).
func ocLanesPay(g *convGeom, vl, mr int, rows bool) bool {
	if g.mg <= vl && !(vl == 16 && zmmSplit.Load()) {
		return false
	}
	cols := ceilDiv(g.nw, vl) * vl
	if rows {
		tail := g.ow % (2 * vl)
		switch {
		case g.ow <= vl:
			cols = ceilDiv(g.oh, 2) * 2 * vl
		case tail == 0:
			cols = g.oh * g.ow
		case tail <= vl:
			cols = g.oh * (g.ow - tail + vl)
		default:
			cols = g.oh * (g.ow - tail + 2*vl)
		}
	}
	rowPath := ceilDiv(g.mg, mr) * mr * cols
	tw := ocWidth(g.ow, mr)
	ocPath := g.oh * ceilDiv(g.ow, tw) * tw * ceilDiv(g.mg, vl) * vl
	return 5*ocPath <= 4*rowPath
}

// ocWidth is oc_gemm's tile width for rows of ow pixels: of mr down to 4
// (two FMA pipes of latency 4 want 8 chains, two vectors a pixel), the one
// whose tiles waste the fewest pixels for their width, the widest of
// equals: 6 for rows of 12 at AVX2, 5 for 10.
func ocWidth(ow, mr int) int {
	best, waste := mr, (mr-ow%mr)%mr
	for tw := mr - 1; tw >= 4; tw-- {
		if w := (tw - ow%tw) % tw; w*mr < waste*tw {
			best, waste = tw, w
		}
	}
	return best
}

// convWinograd says when the 3×3 "same" convolutions run by Winograd:
// winoAuto on the shapes winoPays picks, each by its winoTileFor tiling;
// winoAuto2 there too, but by F(2×2, 3×3) only (KILN_CONV_WINOGRAD=2, for
// F(2×2)'s tighter rounding); winoOff never (KILN_CONV_WINOGRAD=0); the
// winoAlways modes on every shape the kernels take (tests: SetConvWinograd).
var convWinograd atomic.Int32

const (
	winoOff = iota
	winoAuto
	winoAuto2
	winoAlways  // every shape the kernels take, each plane its winoTileFor tile
	winoAlways2 // every such shape, F(2×2, 3×3) only
	winoAlways4 // every such shape, F(4×4, 3×3) only
)

// winoEnvErr is why $KILN_CONV_WINOGRAD was refused, if it was.
var winoEnvErr error

func init() {
	convWinograd.Store(winoAuto)
	switch v := strings.TrimSpace(os.Getenv("KILN_CONV_WINOGRAD")); v {
	case "", "1":
	case "0":
		convWinograd.Store(winoOff)
	case "2":
		convWinograd.Store(winoAuto2)
	default:
		winoEnvErr = fmt.Errorf("$KILN_CONV_WINOGRAD: %q: want 0 (direct sums only), 1 (Winograd where it pays) "+
			"or 2 (Winograd where it pays, F(2×2, 3×3) only)", v)
	}
}

// ConvWinogradEnvError is why $KILN_CONV_WINOGRAD was refused (not 0, 1 or
// 2), nil when it was applied or not set.
func ConvWinogradEnvError() error { return winoEnvErr }

// winoFor reports whether g's forward (backward: its input gradient, when
// wanted) runs by Winograd.
func winoFor(g *convGeom, backward, dx bool) bool {
	if backward {
		return dx && winoShape(g, g.mg, g.cg)
	}
	return winoShape(g, g.cg, g.mg)
}

// winoShape reports whether a product over k planes into m of g's shape
// runs by Winograd.
func winoShape(g *convGeom, k, m int) bool {
	mode := convWinograd.Load()
	return mode != winoOff && g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1 &&
		g.ph == 1 && g.pw == 1 && g.oh == g.h && g.ow == g.w && k <= convFastMaxK &&
		(mode >= winoAlways || winoPays(k, m, g.w))
}

// winoPays: Winograd's products must be wide enough (k, m ≥ 24: at 16 its
// transforms cost what it saves) and its planes wide enough (w ≥ 13: each
// tile row has a junk column, and planes of 8×8 and smaller ran at half the
// direct sums' speed and less). BenchmarkConv2DWinograd, Zen 4, AVX-512.
func winoPays(k, m, w int) bool { return k >= 24 && m >= 24 && w >= 13 }

// winoTileFor is the output tile the passes of an h×w plane run with:
// F(4×4, 3×3)'s 36 products a 4×4 block where, with its ragged edges and
// junk column, it takes at most 0.7 of the products F(2×2, 3×3) takes with
// its 16 a 2×2 block, else F(2×2). BenchmarkConv2DWinograd, Zen 4, AVX-512,
// one thread, F(4×4) against F(2×2), forward and backward: 1.15× and 1.09×
// on 32 channels at 20×20 (0.61 of the products), 1.15–1.27× and 1.17× at
// 24×24 (0.61), 1.26× and 1.19× at 28×28 (0.6), 1.37× and 1.28× on 24 → 48
// channels at 16×16 (0.63); even at 14×14 (0.8: a 16-wide tiling of a
// 14-wide plane).
func winoTileFor(h, w int) int {
	switch convWinograd.Load() {
	case winoAlways2, winoAuto2:
		return 2
	case winoAlways4:
		return 4
	}
	f4 := 36 * ceilDiv(h, 4) * (ceilDiv(w, 4) + 1)
	f2 := 16 * ceilDiv(h, 2) * (ceilDiv(w, 2) + 1)
	if 10*f4 <= 7*f2 {
		return 4
	}
	return 2
}

// winoPositions is the transformed tile's size: 16 for F(2×2), 36 for F(4×4).
func winoPositions(tile int) int { return (tile + 2) * (tile + 2) }

// flatMasks keeps the flat paths' mask tables, one per shape, level and
// direction: the same every step (computing one took 15 µs on the caller
// while the workers waited, six times a cnn step). Tables are at most 256
// KiB (flatMaxPixelTaps); past flatMaskTables shapes the cache starts over.
var flatMasks struct {
	sync.Mutex
	tables map[flatMaskKey][]float32
}

// flatMaskKey is what a mask table depends on.
type flatMaskKey struct {
	h, w, kh, kw, ph, pw, vl int
	neg                      bool
}

const flatMaskTables = 64

// flatMasksFor returns t's mask table, read-only, computed on first use.
func flatMasksFor(t *flatTaps) []float32 {
	key := flatMaskKey{t.h, t.w, t.kh, t.kw, t.ph, t.pw, t.vl, t.neg}
	flatMasks.Lock()
	defer flatMasks.Unlock()
	if m, ok := flatMasks.tables[key]; ok {
		return m
	}
	if len(flatMasks.tables) >= flatMaskTables || flatMasks.tables == nil {
		flatMasks.tables = make(map[flatMaskKey][]float32)
	}
	m := make([]float32, t.maskWords())
	t.fillMasks(m)
	flatMasks.tables[key] = m
	return m
}

// layout places the buffers of one part in its scratch: the padded input,
// the padded and transposed output gradients, the part's dw and db.
func (t *convFastTask) layout(g *convGeom) convFastLayout {
	var l convFastLayout
	needX := !t.backward && !t.flat && !t.wino || t.backward && t.dw != nil && !t.winoDw
	if g.padded && needX {
		l.yb = g.cg * g.hp * g.wp
	}
	l.dyp = l.yb
	switch {
	case t.fwdOC:
		l.dyp += g.p * t.ocLd()
	case !t.backward && !t.fwdRows && !t.flat && !t.wino:
		l.dyp += g.mg * g.nw
	}
	l.dyt = l.dyp
	if t.backward && (t.dx != nil && !t.flat && !t.wino || t.dw != nil && !t.dwT && !t.dwRows && !t.winoDw) {
		l.dyt += g.mg * t.dyLen
	}
	l.dw = l.dyt
	if t.dw != nil && t.dwT && !t.winoDw {
		l.dw += g.p * t.ldt
	}
	l.db = l.dw
	switch {
	case t.winoDw:
		l.db += g.groups * winoPositions(t.winoTile) * g.cg * t.ldt
	case t.dw != nil:
		l.db += g.groups * g.kg * t.ldt
	}
	l.wino = l.db
	if t.db != nil {
		l.wino += g.groups * t.ldt
	}
	wino := 0 // dx and dw take turns
	if t.wino && t.backward {
		wino = winoScratch(t.winoTile, g.mg, g.cg, g.h, g.w) // dx: dout's planes in, x's out
	} else if t.wino {
		wino = winoScratch(t.winoTile, g.cg, g.mg, g.h, g.w)
	}
	if t.winoDw {
		wino = max(wino, winoDwScratch(t.winoTile, g.cg, g.mg, g.h, g.w, t.ldt))
	}
	l.size = l.wino + wino
	return l
}

// packWeights takes the scratch of np parts and packs each group's weights
// tap-major for the products that read them.
func (t *convFastTask) packWeights(g *convGeom, np int) {
	packM, packR := g.mg, g.cg
	if t.backward {
		packM, packR = g.cg, g.mg
	}
	t.apGroup = 0
	packMR := t.mr
	if t.fwdOC {
		packMR = 2 * t.vl
	}
	if !t.backward || t.dx != nil {
		t.apGroup = ceilDiv(packM, packMR) * packMR * packR * t.taps
	}
	if t.wino {
		t.apGroup = winoPositions(t.winoTile) * ceilDiv(packM, t.mr) * t.mr * packR
	}
	t.scratch = takeScratch[float32](np*t.l.size + g.groups*t.apGroup) // zeroed: margins stay so
	t.ap = t.scratch[np*t.l.size:]
	rb := 1 // planes per block of k (convPack)
	switch {
	case t.flat:
		rb = convFlatBlock
	case t.backward && t.dxSkip:
		rb = packR
	}
	for gi := 0; gi < g.groups && t.apGroup > 0; gi++ {
		wg := t.w[gi*g.mg*g.kg : (gi+1)*g.mg*g.kg]
		switch {
		case t.wino && t.backward: // dx's product: rows c, columns co, each kernel turned
			winoPack(t.winoTile, t.ap[gi*t.apGroup:], wg, g.cg, g.mg, t.taps, g.kg, true, t.mr)
		case t.wino:
			winoPack(t.winoTile, t.ap[gi*t.apGroup:], wg, g.mg, g.cg, g.kg, t.taps, false, t.mr)
		case t.backward:
			convPack(t.ap[gi*t.apGroup:], wg, g.cg, g.mg, t.taps, t.taps, g.kg, rb, t.mr)
		default:
			convPack(t.ap[gi*t.apGroup:], wg, g.mg, g.cg, t.taps, g.kg, t.taps, rb, packMR)
		}
	}
}

// sumParts adds each part's dw and db into the caller's, in part order, so
// results are the same run after run.
func (t *convFastTask) sumParts(g *convGeom, np int) {
	l := t.l
	if t.winoDw {
		t.sumWinoDw(g, np)
	}
	for part := 0; part < np; part++ {
		s := t.scratch[part*l.size:]
		if !t.dwT && !t.winoDw {
			for i, v := range s[l.dw : l.dw+len(t.dw)] {
				t.dw[i] += v
			}
		}
		for gi := 0; gi < g.groups && t.dw != nil && t.dwT && !t.winoDw; gi++ {
			dwt := s[l.dw+gi*g.kg*t.ldt:]
			for co := 0; co < g.mg; co++ {
				dw := t.dw[(gi*g.mg+co)*g.kg : (gi*g.mg+co+1)*g.kg]
				for k := range dw {
					dw[k] += dwt[k*t.ldt+co]
				}
			}
		}
		for gi := 0; gi < g.groups && t.db != nil; gi++ {
			for co, v := range s[l.db+gi*t.ldt : l.db+gi*t.ldt+g.mg] {
				t.db[gi*g.mg+co] += v
			}
		}
	}
}

// sumWinoDw adds the parts' dUᵀ in part order and adds dg = Gᵀ dU G of the
// sum to dw, in float64, rounding once. The sums run along the parts' rows
// (co) into du64, laid out as the parts are: read across positions for
// each (co, c), the parts' strided floats were slower than the sums.
func (t *convFastTask) sumWinoDw(g *convGeom, np int) {
	l := t.l
	pos := winoPositions(t.winoTile)
	per := pos * g.cg * t.ldt // one group's dUᵀ
	du64 := takeScratch[float64](per)
	defer giveScratch(du64)
	var du [36]float64
	for gi := 0; gi < g.groups; gi++ {
		clear(du64)
		for part := 0; part < np; part++ {
			src := t.scratch[part*l.size+l.dw+gi*per:][:per]
			for r := 0; r < pos*g.cg; r++ {
				row, sum := src[r*t.ldt:][:g.mg], du64[r*t.ldt:][:g.mg]
				for co, v := range row {
					sum[co] += float64(v)
				}
			}
		}
		for co := 0; co < g.mg; co++ {
			for c := 0; c < g.cg; c++ {
				for xi := range pos {
					du[xi] = du64[(xi*g.cg+c)*t.ldt+co]
				}
				dw := t.dw[(gi*g.mg+co)*g.kg+c*9:][:9]
				if pos == 16 {
					winoWeightGrad(dw, (*[16]float64)(du[:16]))
				} else {
					winoWeightGrad4(dw, &du)
				}
			}
		}
	}
}

// winoWeightGrad adds Gᵀ dU G (3×3) to dw, dU the 4×4 gradient of U = G g
// Gᵀ, G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1].
func winoWeightGrad(dw []float32, du *[16]float64) {
	var t [3][4]float64 // Gᵀ dU
	for b := range 4 {
		t[0][b], t[1][b], t[2][b] = winoGT2(du[b], du[4+b], du[8+b], du[12+b])
	}
	for i := range 3 {
		r := t[i]
		a, b, c := winoGT2(r[0], r[1], r[2], r[3])
		dw[3*i] += float32(a)
		dw[3*i+1] += float32(b)
		dw[3*i+2] += float32(c)
	}
}

// winoGT2 is Gᵀ u for F(2×2, 3×3)'s G.
func winoGT2(u0, u1, u2, u3 float64) (float64, float64, float64) {
	return u0 + 0.5*(u1+u2), 0.5 * (u1 - u2), 0.5*(u1+u2) + u3
}

// winoWeightGrad4 adds Gᵀ dU G (3×3) to dw, dU the 6×6 gradient of U = G g
// Gᵀ, G = [¼ 0 0; −⅙ −⅙ −⅙; −⅙ ⅙ −⅙; 1/24 1/12 ⅙; 1/24 −1/12 ⅙; 0 0 1]
// (conv_wino4_cpu.c).
func winoWeightGrad4(dw []float32, du *[36]float64) {
	var t [3][6]float64 // Gᵀ dU
	for b := range 6 {
		t[0][b], t[1][b], t[2][b] = winoGT4(du[b], du[6+b], du[12+b], du[18+b], du[24+b], du[30+b])
	}
	for i := range 3 {
		r := t[i]
		a, b, c := winoGT4(r[0], r[1], r[2], r[3], r[4], r[5])
		dw[3*i] += float32(a)
		dw[3*i+1] += float32(b)
		dw[3*i+2] += float32(c)
	}
}

// winoGT4 is Gᵀ u for F(4×4, 3×3)'s G.
func winoGT4(u0, u1, u2, u3, u4, u5 float64) (float64, float64, float64) {
	const sixth, twelfth, twentyfourth = 1.0 / 6, 1.0 / 12, 1.0 / 24
	s12, d12, s34, d34 := u1+u2, u1-u2, u3+u4, u3-u4
	return u0*0.25 - s12*sixth + s34*twentyfourth, d34*twelfth - d12*sixth, (s34-s12)*sixth + u5
}

func (t *convFastTask) run(part, lo, hi int) {
	s := t.scratch[part*t.l.size : (part+1)*t.l.size]
	if t.backward {
		t.backwardImages(s, lo, hi)
	} else {
		t.forwardImages(s, lo, hi)
	}
}

// input returns image n's group gi as the kernels read it: x itself, or its
// padded copy in the part's scratch.
func (t *convFastTask) input(s []float32, n, gi int) []float32 {
	g := &t.g
	xg := t.x[n*g.cin*g.inPlane+gi*g.cg*g.inPlane:][:g.cg*g.inPlane]
	if !g.padded {
		return xg
	}
	xp := s[t.l.pad:t.l.yb]
	convCopyRows(xp[g.ph*g.wp+g.pw:], g.hp*g.wp, g.wp, xg, g.inPlane, g.w, g.cg, g.h, g.w)
	return xp
}

// xTaps reads the input's planes at the forward tap offsets.
func (t *convFastTask) xTaps() shiftTaps {
	g := &t.g
	return shiftTaps{nr: g.cg, nt: t.taps, ldbr: g.hp * g.wp, kw: g.kw, sh: g.dh * g.wp, sw: g.dw, vl: t.vl}
}

func (t *convFastTask) forwardImages(s []float32, lo, hi int) {
	g := &t.g
	if t.wino {
		t.forwardWino(s, lo, hi)
		return
	}
	taps := t.xTaps()
	for n := lo; n < hi; n++ {
		for gi := 0; gi < g.groups; gi++ {
			yg := t.y[n*g.outPlanes+gi*g.mg*g.p:][:g.mg*g.p]
			ap := t.ap[gi*t.apGroup:]
			var bias []float32
			if t.b != nil {
				bias = t.b[gi*g.mg : (gi+1)*g.mg]
			}
			xg := t.x[n*g.cin*g.inPlane+gi*g.cg*g.inPlane:][:g.cg*g.inPlane]
			if t.flat {
				convFlatGemm(yg, g.p, g.mg, ap, xg, &t.ft, bias)
				continue
			}
			src := t.input(s, n, gi)
			if t.fwdOC {
				convOCGemm(yg, g.p, g.mg, ap, src, taps, bias, shiftSegs{g.oh, g.ow, g.wp, g.ow}, s[t.l.yb:t.l.dyp],
					t.ocLd(), ocWidth(g.ow, t.mr))
				continue
			}
			if t.fwdRows {
				convShiftGemm(yg, g.p, g.mg, ap, src, taps, bias, shiftSegs{g.oh, g.ow, g.wp, g.ow})
				continue
			}
			yb := s[t.l.yb:t.l.dyp]
			convShiftGemm(yb, g.nw, g.mg, ap, src, taps, bias, shiftSegs{1, g.nw, 0, 0})
			convCopyRows(yg, g.p, g.ow, yb, g.nw, g.wp, g.mg, g.oh, g.ow) // drop the junk columns
		}
	}
}

// forwardWino runs images lo … hi − 1 by Winograd, each group's planes of
// all of them in one call (F(4×4) puts the tiles of several small planes
// side by side in its products' columns).
func (t *convFastTask) forwardWino(s []float32, lo, hi int) {
	g := &t.g
	xs, ys := g.cin*g.inPlane, g.outPlanes
	for gi := 0; gi < g.groups; gi++ {
		var bias []float32
		if t.b != nil {
			bias = t.b[gi*g.mg : (gi+1)*g.mg]
		}
		convWino(t.winoTile, t.y[lo*ys+gi*g.mg*g.p:], ys, t.x[lo*xs+gi*g.cg*g.inPlane:], xs, hi-lo,
			t.ap[gi*t.apGroup:], bias, s[t.l.wino:], g.cg, g.mg, g.h, g.w, t.vl)
	}
}

// backwardWino runs the Winograd passes of images lo … hi − 1, each group's
// planes of all of them in one call: the weight gradient (winoDw) into the
// part's dw, then the input gradient (wino).
func (t *convFastTask) backwardWino(s, dwp []float32, lo, hi int) {
	g := &t.g
	xs, ys := g.cin*g.inPlane, g.outPlanes
	for gi := 0; gi < g.groups; gi++ {
		dy := t.y[lo*ys+gi*g.mg*g.p:]
		if dwp != nil && t.winoDw {
			convWinoDw(t.winoTile, dwp[gi*winoPositions(t.winoTile)*g.cg*t.ldt:], t.ldt,
				t.x[lo*xs+gi*g.cg*g.inPlane:], xs, dy, ys, hi-lo, s[t.l.wino:], g.cg, g.mg, g.h, g.w, t.vl)
		}
		if t.dx != nil && t.wino {
			convWino(t.winoTile, t.dx[lo*xs+gi*g.cg*g.inPlane:], xs, dy, ys, hi-lo, t.ap[gi*t.apGroup:], nil,
				s[t.l.wino:], g.mg, g.cg, g.h, g.w, t.vl)
		}
	}
}

func (t *convFastTask) backwardImages(s []float32, lo, hi int) {
	g := &t.g
	var dwp, dbp []float32
	if t.dw != nil {
		dwp = s[t.l.dw:t.l.db]
	}
	if t.db != nil {
		dbp = s[t.l.db:t.l.size]
	}
	dyp, dyt := s[t.l.dyp:t.l.dyt], s[t.l.dyt:t.l.dw]
	wide := len(dyp) > 0 // dx, or dot products over the wide frame
	xTaps := t.xTaps()
	// The input gradient reads the margined dout at maxOff − tap offset.
	dxTaps := shiftTaps{nr: g.mg, nt: t.taps, ldbr: t.dyLen, kw: g.kw, base: t.maxOff, sh: -g.dh * g.wp, sw: -g.dw,
		vl: t.vl}
	if t.wino || t.winoDw {
		t.backwardWino(s, dwp, lo, hi)
	}
	for n := lo; n < hi; n++ {
		dyn := t.y[n*g.outPlanes : (n+1)*g.outPlanes]
		if dbp != nil && (dwp == nil || !t.dwT || t.winoDw) {
			for gi := 0; gi < g.groups; gi++ {
				convAddRowSums(dbp[gi*t.ldt:gi*t.ldt+g.mg], dyn[gi*g.mg*g.p:], g.p)
			}
		}
		for gi := 0; gi < g.groups; gi++ {
			dyg := dyn[gi*g.mg*g.p : (gi+1)*g.mg*g.p]
			if wide {
				// dout into the wide frame; margins and junk columns stay zero.
				convCopyRows(dyp[t.maxOff:], t.dyLen, g.wp, dyg, g.p, g.ow, g.mg, g.oh, g.ow)
			}
			if dwp != nil && !t.dwT && !t.winoDw {
				src := t.input(s, n, gi)
				dwg := dwp[gi*g.mg*g.kg : (gi+1)*g.mg*g.kg]
				if t.dwRows {
					convShiftDw(dwg, g.kg, g.mg, dyg, g.p, src, xTaps, shiftSegs{g.oh, g.ow, g.wp, g.ow})
				} else {
					convShiftDw(dwg, g.kg, g.mg, dyp[t.maxOff:], t.dyLen, src, xTaps, shiftSegs{1, g.nw, 0, 0})
				}
			}
			if dwp != nil && t.dwT && !t.winoDw {
				// dwᵀ += X·doutᵀ (and db += column sums of doutᵀ).
				src := t.input(s, n, gi)
				convTransposeOut(dyt, t.ldt, dyg, g.mg, g.oh, g.ow)
				var dbg []float32
				if dbp != nil && t.dwT {
					dbg = dbp[gi*t.ldt : (gi+1)*t.ldt]
				}
				convShiftDwt(dwp[gi*g.kg*t.ldt:(gi+1)*g.kg*t.ldt], t.ldt, dbg, dyt, src, xTaps,
					shiftSegs{g.oh, g.ow, g.wp, 0})
			}
			if t.dx == nil {
				continue
			}
			dxg := t.dx[n*g.cin*g.inPlane+gi*g.cg*g.inPlane:][:g.cg*g.inPlane]
			ap := t.ap[gi*t.apGroup:]
			switch {
			case t.wino: // backwardWino's
			case t.flat:
				convFlatGemm(dxg, g.inPlane, g.cg, ap, dyg, &t.ft, nil)
			case t.dxSkip:
				convShiftGemmDx(dxg, g.inPlane, g.cg, ap, dyp[g.ph*g.wp+g.pw:], dxTaps, g.kh,
					shiftSegs{g.h, g.w, g.wp, g.w}, g.ph, g.dh, g.oh)
			case !g.padded:
				// The whole plane is one run of the wide frame.
				convShiftGemm(dxg, g.inPlane, g.cg, ap, dyp, dxTaps, nil, shiftSegs{1, g.inPlane, 0, 0})
			default:
				convShiftGemm(dxg, g.inPlane, g.cg, ap, dyp[g.ph*g.wp+g.pw:], dxTaps, nil,
					shiftSegs{g.h, g.w, g.wp, g.w})
			}
		}
	}
}

// flatMaxPixelTaps bounds a flat convolution's plane times its taps (an
// 85×85 plane at 3×3, 36×36 at 7×7), and with it the mask table.
const flatMaxPixelTaps = 1 << 16

// dxRowTaps counts the (input row, kernel row) pairs of the input gradient
// that read the output gradient rather than its zero margins.
func dxRowTaps(g *convGeom) int {
	n := 0
	for y := 0; y < g.h; y++ {
		for kh := 0; kh < g.kh; kh++ {
			if r := y + g.ph - kh*g.dh; r >= 0 && r < g.oh {
				n++
			}
		}
	}
	return n
}
