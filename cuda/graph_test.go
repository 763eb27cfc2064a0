package cuda

import (
	"slices"
	"testing"
	"unsafe"
)

// graphBufs are the device buffers of the test steps below: n floats each.
type graphBufs struct {
	x, y, z, w Ptr
	n          int
}

func newGraphBufs(t *testing.T, n int) *graphBufs {
	t.Helper()
	b := &graphBufs{n: n}
	for _, p := range []*Ptr{&b.x, &b.y, &b.z, &b.w} {
		var err error
		if *p, err = Alloc(int64(4 * n)); err != nil {
			t.Fatal(err)
		}
		if err := Zero(*p, int64(4*n)); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, p := range []Ptr{b.x, b.y, b.z, b.w} {
			Free(p, int64(4*n))
		}
	})
	return b
}

func (b *graphBufs) fill(t *testing.T, p Ptr, v float32) {
	t.Helper()
	var a Args
	if err := Launch(K("fill_f32"), D1(Blocks(b.n, 128, 8)), D1(128), 0, a.Ptr(p).F32(v).I64(int64(b.n))); err != nil {
		t.Fatal(err)
	}
}

func (b *graphBufs) axpy(t *testing.T, dst, src Ptr, alpha float32) {
	t.Helper()
	var a Args
	if err := Launch(K("axpy_f32"), D1(Blocks(b.n, 128, 8)), D1(128), 0, a.Ptr(dst).Ptr(src).F32(alpha).I64(int64(b.n))); err != nil {
		t.Fatal(err)
	}
}

func (b *graphBufs) put(t *testing.T, p Ptr, v float32) {
	t.Helper()
	h := make([]float32, b.n)
	for i := range h {
		h[i] = v + float32(i)
	}
	if err := CopyHtoD(p, unsafe.Pointer(&h[0]), int64(4*b.n)); err != nil {
		t.Fatal(err)
	}
}

func (b *graphBufs) all(t *testing.T) []float32 {
	t.Helper()
	var out []float32
	for _, p := range []Ptr{b.x, b.y, b.z, b.w} {
		out = append(out, download(t, p, b.n)...)
	}
	return out
}

// stepsBothWays runs step for steps 0..steps-1, once as usual and once
// bracketed by a StepGraph, on fresh buffers, and fails unless both leave
// the same bits. It returns the graph's counts.
func stepsBothWays(t *testing.T, steps int, step func(b *graphBufs, i int)) GraphStats {
	t.Helper()
	openOrSkip(t)
	const n = 300 // not a multiple of the block
	plain := newGraphBufs(t, n)
	for i := range steps {
		step(plain, i)
	}
	want := plain.all(t)

	b := newGraphBufs(t, n)
	g := NewStepGraph()
	defer g.Release()
	for i := range steps {
		if err := g.Begin(); err != nil {
			t.Fatal(err)
		}
		step(b, i)
		if err := g.End(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	if got := b.all(t); !slices.Equal(got, want) {
		t.Fatalf("with a graph the buffers differ from the steps run as usual")
	}
	return g.Stats()
}

// sameStats fails unless a StepGraph counted what the test expects.
func sameStats(t *testing.T, got, want GraphStats) {
	t.Helper()
	if got != want {
		t.Fatalf("stats %+v, want %+v", got, want)
	}
}

func TestCUDAStepGraphReplaysARepeatedStep(t *testing.T) {
	// The fill's value changes every step: its node gets new arguments.
	s := stepsBothWays(t, 6, func(b *graphBufs, i int) {
		b.fill(t, b.x, float32(i)+0.25)
		b.axpy(t, b.y, b.x, 0.5)
		if err := Zero(b.z, int64(4*b.n)); err != nil {
			t.Fatal(err)
		}
		if err := CopyDtoD(b.z, b.y, int64(4*b.n)); err != nil {
			t.Fatal(err)
		}
	})
	sameStats(t, s, GraphStats{Steps: 6, Replays: 5, Builds: 1, Updates: 4, Nodes: 4})
}

func TestCUDAStepGraphIssuesWhatItHeldBeforeARead(t *testing.T) {
	s := stepsBothWays(t, 4, func(b *graphBufs, i int) {
		b.fill(t, b.x, float32(i))
		if i == 2 { // a read in the middle of a held-back step sees the fill
			if got := download(t, b.x, b.n); got[b.n-1] != float32(i) {
				t.Fatalf("step %d read %v, want %v", i, got[b.n-1], float32(i))
			}
		}
		b.axpy(t, b.y, b.x, 2)
	})
	// Step 2 left its plan at the read and ran as usual; step 3 was the
	// graph's again, with the fill's node given its value.
	sameStats(t, s, GraphStats{Steps: 4, Replays: 2, Builds: 1, Updates: 1, Diverged: 1, Nodes: 2,
		LastLeft: "operation 1: a copy to the host"})
}

func TestCUDAStepGraphUploadsInStepOrder(t *testing.T) {
	// x is read, then overwritten by an upload, then read again: the
	// upload cannot go ahead of the held-back axpy that reads x first.
	s := stepsBothWays(t, 4, func(b *graphBufs, i int) {
		b.axpy(t, b.y, b.x, 1)
		b.put(t, b.x, float32(10*i))
		b.axpy(t, b.y, b.x, 1)
	})
	if s.Replays != 0 || s.Diverged != 3 {
		t.Fatalf("stats %+v: every held-back step should have been issued before its upload", s)
	}
	// An upload to a buffer only later operations name goes ahead of them,
	// and the step still replays.
	s = stepsBothWays(t, 4, func(b *graphBufs, i int) {
		b.axpy(t, b.y, b.x, 1)
		b.put(t, b.w, float32(10*i))
		b.axpy(t, b.y, b.w, 1)
	})
	if s.Replays != 3 || s.Diverged != 0 {
		t.Fatalf("stats %+v, want 3 replays", s)
	}
}

func TestCUDAStepGraphLeavesAChangedPlan(t *testing.T) {
	s := stepsBothWays(t, 7, func(b *graphBufs, i int) {
		b.fill(t, b.x, 1)
		switch i {
		case 2: // another kernel
			var a Args
			if err := Launch(K("scale_f32"), D1(1), D1(128), 0, a.Ptr(b.x).F32(3).I64(int64(b.n))); err != nil {
				t.Fatal(err)
			}
		case 4: // one operation fewer
			return
		case 5: // one more
			b.axpy(t, b.z, b.y, 1)
		}
		b.axpy(t, b.y, b.x, 1)
	})
	// 0 recorded, 1 built and replayed, 2 left the plan, 3 replayed (the
	// graph outlives a step that left it), 4 left it at End, 5 left it
	// past its end, 6 replayed.
	sameStats(t, s, GraphStats{Steps: 7, Replays: 3, Builds: 1, Updates: 1, Diverged: 3, Nodes: 2,
		LastLeft: "operation 2: kernel axpy_f32 past the plan's end"})
}

func TestCUDAStepGraphTakesAPlanThatRepeats(t *testing.T) {
	s := stepsBothWays(t, 7, func(b *graphBufs, i int) {
		b.fill(t, b.x, float32(i))
		if i >= 3 { // from step 3 on, the step has one operation more
			b.axpy(t, b.z, b.x, 1)
		}
		b.axpy(t, b.y, b.x, 1)
	})
	// 0 recorded, 1 built and replayed, 2 replayed, 3 left the plan (the
	// candidate), 4 left it and repeated the candidate, whose graph is
	// built, 5 and 6 replayed.
	sameStats(t, s, GraphStats{Steps: 7, Replays: 4, Builds: 2, Updates: 3, Diverged: 2, Nodes: 3,
		LastLeft: "operation 2: kernel axpy_f32 past the plan's end"})
}

func TestCUDAStepGraphSettlesBeforeMemoryGoes(t *testing.T) {
	// A scratch block used and freed in a held-back step goes back to the
	// driver in the middle of the next one: what named it runs first
	// (AddressSanitizer would see a use after free on the emulator).
	stepsBothWays(t, 3, func(b *graphBufs, i int) {
		p, err := Alloc(int64(4 * b.n))
		if err != nil {
			t.Fatal(err)
		}
		b.fill(t, p, float32(i))
		b.axpy(t, b.y, p, 1)
		Free(p, int64(4*b.n))
		if err := EmptyCache(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestCUDAStepGraphOneAtATime(t *testing.T) {
	openOrSkip(t)
	g, h := NewStepGraph(), NewStepGraph()
	defer g.Release()
	defer h.Release()
	if err := g.Begin(); err != nil {
		t.Fatal(err)
	}
	if err := g.Begin(); err == nil {
		t.Fatal("a second Begin inside a step was accepted")
	}
	if err := h.Begin(); err == nil {
		t.Fatal("a second StepGraph's step began inside the first's")
	}
	if err := g.End(); err != nil {
		t.Fatal(err)
	}
	if err := h.Begin(); err != nil {
		t.Fatal(err)
	}
	if err := h.End(); err != nil {
		t.Fatal(err)
	}
}
