package data

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/engine"
)

// toySet is a classification set of n samples of c×h×w whose values encode
// (sample, position), labels i%k.
func toySet(t testing.TB, n, c, h, w, k int) *Dataset {
	t.Helper()
	x := engine.New(engine.Float32, n, c, h, w)
	for i := range x.Float32() {
		x.Float32()[i] = float32(i)
	}
	labels := make([]int32, n)
	classes := make([]string, k)
	for i := range labels {
		labels[i] = int32(i % k)
	}
	for j := range classes {
		classes[j] = fmt.Sprint(j)
	}
	d, err := NewClassification("toy", x, labels, classes)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// snapshot copies a batch so it can be compared after its buffer is reused.
type snapshot struct {
	x       []float64
	labels  []int32
	targets []float64
	indices []int
	shape   []int
	index   int
}

func snap(b *Batch) snapshot {
	s := snapshot{x: b.X.Values(), labels: slices.Clone(b.Labels), indices: slices.Clone(b.Indices), shape: slices.Clone(b.X.Shape()), index: b.Index}
	if b.Targets != nil {
		s.targets = b.Targets.Values()
	}
	return s
}

func epochBatches(t testing.TB, l *Loader, epoch, skip int) []snapshot {
	t.Helper()
	if err := l.Start(epoch, skip); err != nil {
		t.Fatal(err)
	}
	var out []snapshot
	for {
		b, ok := l.Next()
		if !ok {
			return out
		}
		out = append(out, snap(b))
	}
}

func newLoader(t testing.TB, d *Dataset, o LoaderOptions) *Loader {
	t.Helper()
	l, err := NewLoader(d, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func TestLoaderBatchCounts(t *testing.T) {
	d := toySet(t, 10, 1, 2, 2, 3)
	for _, c := range []struct {
		bs       int
		dropLast bool
		batches  int
		sizes    string
	}{
		{3, false, 4, "[3 3 3 1]"}, {3, true, 3, "[3 3 3]"}, {5, false, 2, "[5 5]"}, {5, true, 2, "[5 5]"},
		{10, true, 1, "[10]"}, {16, false, 1, "[10]"}, {1, true, 10, "[1 1 1 1 1 1 1 1 1 1]"},
	} {
		l := newLoader(t, d, LoaderOptions{BatchSize: c.bs, DropLast: c.dropLast, Shuffle: true, Seed: 1})
		var sizes []int
		for _, b := range epochBatches(t, l, 0, 0) {
			sizes = append(sizes, len(b.indices))
			if b.shape[0] != len(b.indices) || len(b.labels) != len(b.indices) {
				t.Errorf("batch shape %v with %d labels", b.shape, len(b.labels))
			}
		}
		if l.BatchesPerEpoch() != c.batches || fmt.Sprint(sizes) != c.sizes {
			t.Errorf("batch %d drop-last %v: %d batches per epoch, sizes %v; want %d, %s", c.bs, c.dropLast, l.BatchesPerEpoch(), sizes, c.batches, c.sizes)
		}
		if want := min(10, c.batches*c.bs); l.SamplesPerEpoch() != want {
			t.Errorf("samples per epoch %d, want %d", l.SamplesPerEpoch(), want)
		}
	}
	if _, err := NewLoader(d, LoaderOptions{BatchSize: 16, DropLast: true}); err == nil {
		t.Error("drop-last with no full batch accepted")
	}
	if _, err := NewLoader(d, LoaderOptions{BatchSize: 0}); err == nil {
		t.Error("batch size 0 accepted")
	}
}

func TestLoaderShuffleDeterminism(t *testing.T) {
	d := toySet(t, 37, 1, 3, 3, 4)
	o := LoaderOptions{BatchSize: 8, Shuffle: true, Seed: 42}
	a, b := newLoader(t, d, o), newLoader(t, d, o)
	o.Seed = 43
	c := newLoader(t, d, o)
	for e := 0; e < 3; e++ {
		order := a.Order(e)
		sorted := slices.Sorted(slices.Values(order))
		for i, v := range sorted {
			if v != i {
				t.Fatalf("epoch %d order is not a permutation", e)
			}
		}
		if !slices.Equal(order, b.Order(e)) || slices.Equal(order, c.Order(e)) || (e > 0 && slices.Equal(order, a.Order(e-1))) {
			t.Errorf("epoch %d: order is not a function of (seed, epoch)", e)
		}
		ba, bb := epochBatches(t, a, e, 0), epochBatches(t, b, e, 0)
		if fmt.Sprint(ba) != fmt.Sprint(bb) {
			t.Fatalf("epoch %d: two loaders with one seed serve different batches", e)
		}
		var seen []int
		for _, s := range ba {
			seen = append(seen, s.indices...)
			// Each sample's contents follow its index.
			for j, k := range s.indices {
				if s.labels[j] != d.Labels[k] || s.x[j*9] != float64(d.Image(k)[0]) {
					t.Fatalf("batch %d sample %d is not data set sample %d", s.index, j, k)
				}
			}
		}
		if !slices.Equal(seen, order) {
			t.Errorf("epoch %d: batches do not follow Order", e)
		}
	}
	// Without shuffling the order is the data set's.
	l := newLoader(t, d, LoaderOptions{BatchSize: 8})
	if o := l.Order(5); o[0] != 0 || o[36] != 36 {
		t.Error("unshuffled order is not the identity")
	}
}

// TestLoaderResume: starting an epoch at batch k serves exactly the batches
// k.. of the uninterrupted epoch, with any prefetch depth.
func TestLoaderResume(t *testing.T) {
	d := toySet(t, 50, 3, 8, 8, 5)
	base := LoaderOptions{BatchSize: 7, Shuffle: true, Augment: true, Seed: 9}
	ref := epochBatches(t, newLoader(t, d, base), 2, 0)
	for _, prefetch := range []int{-1, 0, 1, 4} {
		o := base
		o.Prefetch = prefetch
		l := newLoader(t, d, o)
		for _, skip := range []int{0, 3, 7, 8} {
			got := epochBatches(t, l, 2, skip)
			if fmt.Sprint(got) != fmt.Sprint(ref[skip:]) {
				t.Errorf("prefetch %d skip %d: batches differ from the uninterrupted epoch", prefetch, skip)
			}
		}
		if err := l.Start(2, 9); err == nil {
			t.Error("skip past the epoch accepted")
		}
	}
}

// refAugment is the augmentation written the slow way: pad with the black
// value, crop at (ox+4, oy+4), then flip.
func refAugment(src []float32, c, h, w, ox, oy int, flip bool, pad []float32) []float32 {
	const p = AugmentPad
	out := make([]float32, c*h*w)
	for ch := 0; ch < c; ch++ {
		padded := make([]float32, (h+2*p)*(w+2*p))
		for i := range padded {
			padded[i] = pad[ch]
		}
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				padded[(y+p)*(w+2*p)+x+p] = src[ch*h*w+y*w+x]
			}
		}
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				v := padded[(y+oy+p)*(w+2*p)+x+ox+p]
				if flip {
					out[ch*h*w+y*w+(w-1-x)] = v
				} else {
					out[ch*h*w+y*w+x] = v
				}
			}
		}
	}
	return out
}

func TestLoaderAugment(t *testing.T) {
	d := toySet(t, 40, 3, 32, 32, 10)
	d.Mean = []float64{0.5, 0.25, 0.125}
	d.Std = []float64{0.5, 0.5, 0.25}
	pad := []float32{-1, -0.5, -0.5}
	o := LoaderOptions{BatchSize: 16, Shuffle: true, Augment: true, Seed: 5}
	l := newLoader(t, d, o)
	flips, shifts := 0, 0
	for e := 0; e < 2; e++ {
		for _, s := range epochBatches(t, l, e, 0) {
			for j, k := range s.indices {
				r := key(o.Seed, domainAugment, uint64(e), uint64(k))
				ox, oy, flip := int(r%9)-4, int(r/9%9)-4, (r/81)&1 == 1
				want := refAugment(d.Image(k), 3, 32, 32, ox, oy, flip, pad)
				for i, v := range want {
					if float64(v) != s.x[j*3072+i] {
						t.Fatalf("epoch %d sample %d (ox %d oy %d flip %v): value %d = %v, want %v", e, k, ox, oy, flip, i, s.x[j*3072+i], v)
					}
				}
				if flip {
					flips++
				}
				if ox != 0 || oy != 0 {
					shifts++
				}
			}
		}
	}
	if flips < 20 || flips > 60 || shifts < 60 {
		t.Errorf("%d flips and %d shifted crops in 80 draws", flips, shifts)
	}
	// The draw depends on (seed, epoch, sample), not on batching: batch
	// size 5 without prefetch gives the same images.
	o2 := o
	o2.BatchSize, o2.Prefetch = 5, -1
	a, b := epochBatches(t, l, 1, 0), epochBatches(t, newLoader(t, d, o2), 1, 0)
	byIndex := map[int][]float64{}
	for _, s := range a {
		for j, k := range s.indices {
			byIndex[k] = s.x[j*3072 : (j+1)*3072]
		}
	}
	for _, s := range b {
		for j, k := range s.indices {
			if !slices.Equal(byIndex[k], s.x[j*3072:(j+1)*3072]) {
				t.Fatalf("sample %d augmented differently with another batch size", k)
			}
		}
	}
}

func TestLoaderRegressionFloat64(t *testing.T) {
	x := engine.New(engine.Float32, 9, 2, 1, 1)
	for i := range x.Float32() {
		x.Float32()[i] = float32(i) / 4
	}
	targets := []float32{0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4}
	d, err := NewRegression("reg", x, targets)
	if err != nil {
		t.Fatal(err)
	}
	l := newLoader(t, d, LoaderOptions{BatchSize: 4, DType: engine.Float64, Shuffle: true, Seed: 1})
	n := 0
	for b := range l.Batches(0, 0) {
		if b.X.DType() != engine.Float64 || b.Targets.DType() != engine.Float64 || b.Labels != nil {
			t.Fatal("float64 loader served another dtype")
		}
		if !b.Targets.SameShape(b.Size(), 1) {
			t.Fatalf("targets shape %v", b.Targets.Shape())
		}
		for j, k := range b.Indices {
			if b.Targets.At(j) != float64(targets[k]) || b.X.At(2*j+1) != float64(x.Float32()[2*k+1]) {
				t.Fatalf("sample %d wrong", k)
			}
		}
		n += b.Size()
	}
	if n != 9 {
		t.Errorf("%d samples served", n)
	}
}

// TestLoaderPrefetchRace has the consumer scribble over each batch while the
// producer fills the others: the race detector checks the hand-off.
func TestLoaderPrefetchRace(t *testing.T) {
	d := toySet(t, 200, 1, 8, 8, 10)
	before := runtime.NumGoroutine()
	l, err := NewLoader(d, LoaderOptions{BatchSize: 6, Shuffle: true, Augment: true, Seed: 3, Prefetch: 2})
	if err != nil {
		t.Fatal(err)
	}
	for e := 0; e < 3; e++ {
		if err := l.Start(e, 0); err != nil {
			t.Fatal(err)
		}
		n := 0
		for b, ok := l.Next(); ok; b, ok = l.Next() {
			for j, k := range b.Indices {
				if b.Labels[j] != d.Labels[k] {
					t.Fatalf("epoch %d: label of sample %d is %d", e, k, b.Labels[j])
				}
			}
			b.X.Fill(-7)
			clear(b.Labels)
			n += b.Size()
		}
		if n != 200 {
			t.Fatalf("epoch %d served %d samples", e, n)
		}
	}
	// Leaving epochs part-way, by Start, by breaking a range loop, by Close.
	l.Start(3, 0)
	l.Next()
	l.Start(4, 2)
	l.Next()
	for b := range l.Batches(5, 0) {
		if b.Index == 3 {
			break
		}
	}
	l.Next() // after the loop broke: the epoch is over
	l.Start(6, 0)
	l.Next()
	l.Close()
	if err := l.Start(0, 0); err == nil {
		t.Error("Start after Close accepted")
	}
	if _, ok := l.Next(); ok {
		t.Error("Next after Close served a batch")
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		t.Errorf("%d goroutines after Close, %d before", g, before)
	}
}

func TestLoaderNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	d := toySet(t, 4000, 3, 32, 32, 10)
	for _, prefetch := range []int{-1, 1} {
		l := newLoader(t, d, LoaderOptions{BatchSize: 32, Shuffle: true, Augment: true, Seed: 1, Prefetch: prefetch})
		l.Start(0, 0)
		l.Next()
		allocs := testing.AllocsPerRun(100, func() {
			if _, ok := l.Next(); !ok {
				t.Fatal("epoch ended early")
			}
		})
		if allocs != 0 {
			t.Errorf("prefetch %d: %v allocations per batch", prefetch, allocs)
		}
	}
}

func BenchmarkLoaderCIFAR(b *testing.B) {
	d := toySet(b, 4096, 3, 32, 32, 10)
	l := newLoader(b, d, LoaderOptions{BatchSize: 128, Shuffle: true, Augment: true, Seed: 1})
	b.SetBytes(128 * 3072 * 4)
	epoch := 0
	l.Start(0, 0)
	for b.Loop() {
		if _, ok := l.Next(); !ok {
			epoch++
			l.Start(epoch, 0)
		}
	}
}

// An empty data set's loader says it has no samples (it blamed drop-last,
// which evaluation does not use).
func TestLoaderOfNoSamples(t *testing.T) {
	ds := &Dataset{Name: "empty", Task: Classification, Classes: []string{"a"}, Channels: 1, Height: 1, Width: 1, Mean: []float64{0}, Std: []float64{1}}
	if _, err := NewLoader(ds, LoaderOptions{BatchSize: 8}); err == nil || !strings.Contains(err.Error(), "no samples") {
		t.Fatalf("loader of no samples: %v", err)
	}
}
