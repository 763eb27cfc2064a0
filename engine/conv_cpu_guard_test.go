//go:build linux

package engine_test

import (
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"
	"unsafe"

	"github.com/kiln-ml/kiln/engine"
)

// guardedFloats returns n floats that end where an unreadable page begins,
// so a kernel that reads past them faults instead of reading neighbours.
func guardedFloats(t *testing.T, n int) []float32 {
	all := guardedPages(t, n)
	return all[len(all)-n:]
}

// floatsAfterGuard returns n floats that start where an unreadable page
// ends, so a kernel that reads before them faults.
func floatsAfterGuard(t *testing.T, n int) []float32 { return guardedPages(t, n)[:n] }

// guardedPages maps whole pages for at least n floats between two pages no
// one may read.
func guardedPages(t *testing.T, n int) []float32 {
	page := syscall.Getpagesize()
	size := (n*4+page-1)/page*page + 2*page
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Munmap(mem) })
	for _, guard := range [][]byte{mem[:page], mem[size-page:]} {
		if err := syscall.Mprotect(guard, syscall.PROT_NONE); err != nil {
			t.Fatal(err)
		}
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&mem[page])), (size-2*page)/4)
}

// The flat paths (a "same" convolution's forward and input gradient over
// the unpadded planes) load whole vectors only where every lane of the tile
// stays inside its planes, and under masks that fault nothing elsewhere: an
// input and an output gradient that begin right after an unreadable page,
// or end right before one, give the results they give elsewhere (a kernel
// that read outside them would die of SIGSEGV: the AVX2 path did, with its
// check removed).
func TestConv2DFlatReadsOnlyItsPlanes(t *testing.T) {
	if !slices.Contains(engine.CPUISAs(), "avx2") {
		t.Skip("skipped: no AVX2, the flat kernels do not run")
	}
	defer restoreISA(t)()
	checkPlacementsAtLevels(t, "", []convCase{
		{"28x28", 1, 8, 28, 28, 8, 3, 3, engine.Conv2DSquare(1, 1, 1, 1), true},
		{"64x16", 2, 9, 64, 16, 10, 3, 3, engine.Conv2DSquare(1, 1, 1, 1), false},
		{"5x5-pad2", 1, 8, 9, 40, 12, 5, 5, engine.Conv2DSquare(1, 2, 1, 1), true},
	}, false)
}

// The Winograd paths (conv_wino_cpu.c, conv_wino4_cpu.c) copy the planes
// they read, row by row: the same check, forced onto each tiling, the
// weight gradient included.
func TestConv2DWinogradReadsOnlyItsPlanes(t *testing.T) {
	if !slices.Contains(engine.CPUISAs(), "avx2") {
		t.Skip("skipped: no AVX2, the Winograd kernels do not run")
	}
	defer restoreISA(t)()
	defer engine.SetConvWinograd("always")()
	for _, tiling := range []string{"always2", "always4"} {
		restore := engine.SetConvWinograd(tiling)
		checkPlacementsAtLevels(t, tiling+" ", []convCase{
			{"28x28", 2, 24, 28, 28, 32, 3, 3, engine.Conv2DSquare(1, 1, 1, 1), false},
			{"odd-7x9", 1, 17, 7, 9, 19, 3, 3, engine.Conv2DSquare(1, 1, 1, 1), false},
			{"3-wide", 1, 16, 5, 3, 16, 3, 3, engine.Conv2DSquare(1, 1, 1, 1), false},
			{"16x16-images", 5, 24, 16, 16, 24, 3, 3, engine.Conv2DSquare(1, 1, 1, 1), false},
		}, true)
		restore()
	}
}

// checkPlacementsAtLevels runs checkPlacements on each case at each ISA
// level the C kernels run at.
func checkPlacementsAtLevels(t *testing.T, prefix string, cases []convCase, withDw bool) {
	t.Helper()
	for _, level := range engine.CPUISAs()[1:] {
		opsMust(t, engine.SetCPUISA(level))
		for i, c := range cases {
			checkPlacements(t, prefix+level, c, uint64(i), withDw)
		}
	}
}

// checkPlacements runs c's forward and backward (dx, and dw when asked) with
// its input and output gradient where Go puts them, then ending right before
// an unreadable page, then starting right after one, and reports each result
// whose bits differ.
func checkPlacements(t *testing.T, level string, c convCase, seed uint64, withDw bool) {
	t.Helper()
	rng := rand.New(rand.NewPCG(17, seed))
	xs, ws := c.shapes()
	x, w := randTensor(rng, engine.Float32, xs...), randTensor(rng, engine.Float32, ws...)
	os, err := engine.Conv2DOutputShape(xs, ws, c.p)
	opsMust(t, err)
	dout := randTensor(rng, engine.Float32, os...)
	var want []*engine.Tensor
	for j, place := range []func(*testing.T, int) []float32{nil, guardedFloats, floatsAfterGuard} {
		xin, din := x, dout
		if place != nil {
			xg, dg := place(t, x.Len()), place(t, dout.Len())
			copy(xg, x.Float32())
			copy(dg, dout.Float32())
			xin, err = engine.FromFloat32(xg, xs...)
			opsMust(t, err)
			din, err = engine.FromFloat32(dg, os...)
			opsMust(t, err)
		}
		out, dx := engine.New(engine.Float32, os...), engine.New(engine.Float32, xs...)
		var dw *engine.Tensor
		if withDw {
			dw = engine.New(engine.Float32, ws...)
		}
		opsMust(t, engine.Conv2DForward(out, xin, w, nil, c.p))
		opsMust(t, engine.Conv2DBackward(dx, dw, nil, din, xin, w, c.p))
		got := []*engine.Tensor{out, dx}
		if withDw {
			got = append(got, dw)
		}
		if j == 0 {
			want = got
			continue
		}
		for k := range got {
			if !slices.Equal(want[k].Float32(), got[k].Float32()) {
				t.Errorf("%s %s placement %d: %s differs beside an unreadable page", level, c.name, j,
					[]string{"out", "dx", "dw"}[k])
			}
		}
	}
}

// The AVX2 products read whole vectors past a ragged tile's columns where b
// goes on that far (kiln_conv_shift_gemm's blen). An unpadded input is read
// in place, so its last row ends at the end of x: here, at a page no one may
// read (the test dies of SIGSEGV when a kernel reads past it; it did, with
// the check removed). Each shape's results must equal those of the same
// input elsewhere.
func TestConv2DFastReadsNoFurtherThanItsInput(t *testing.T) {
	if !slices.Contains(engine.CPUISAs(), "avx2") {
		t.Skip("skipped: no AVX2, the kernels that read past a tile do not run")
	}
	defer restoreISA(t)()
	opsMust(t, engine.SetCPUISA("avx2"))
	for i, c := range []convCase{
		{"rows-of-6", 2, 3, 8, 8, 8, 3, 3, engine.Conv2DParams{}, true},            // two 6-wide rows to a tile, the last pair last
		{"wide-frame-ragged", 2, 4, 12, 12, 13, 3, 3, engine.Conv2DParams{}, true}, // the frame's last tile ragged
		{"rows-of-14", 1, 5, 16, 16, 7, 3, 3, engine.Conv2DParams{}, true},
	} {
		rng := rand.New(rand.NewPCG(13, uint64(i)))
		xs, ws := c.shapes()
		x, w := randTensor(rng, engine.Float32, xs...), randTensor(rng, engine.Float32, ws...)
		b := randTensor(rng, engine.Float32, c.cout)
		guarded := guardedFloats(t, x.Len())
		copy(guarded, x.Float32())
		xg, err := engine.FromFloat32(guarded, xs...)
		opsMust(t, err)
		os, err := engine.Conv2DOutputShape(xs, ws, c.p)
		opsMust(t, err)
		dout := randTensor(rng, engine.Float32, os...)
		var got [2][]*engine.Tensor
		for j, in := range []*engine.Tensor{x, xg} {
			out, dx := engine.New(engine.Float32, os...), engine.New(engine.Float32, xs...)
			dw, db := engine.New(engine.Float32, ws...), engine.New(engine.Float32, c.cout)
			opsMust(t, engine.Conv2DForward(out, in, w, b, c.p))
			opsMust(t, engine.Conv2DBackward(dx, dw, db, dout, in, w, c.p))
			got[j] = []*engine.Tensor{out, dx, dw, db}
		}
		for k, name := range []string{"out", "dx", "dw", "db"} {
			if !slices.Equal(got[0][k].Float32(), got[1][k].Float32()) {
				t.Errorf("%s %s: differs with the input before an unreadable page", c.name, name)
			}
		}
	}
}
