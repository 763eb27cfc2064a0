package data

import (
	"errors"
	"fmt"
	"iter"

	"github.com/kiln-ml/kiln/engine"
)

// AugmentPad is the zero padding (in pixels, on every side) of the random
// crop.
const AugmentPad = 4

// LoaderOptions configure a Loader.
type LoaderOptions struct {
	BatchSize int  // samples per batch (> 0)
	Shuffle   bool // a new seeded order every epoch; otherwise the data set's order
	DropLast  bool // drop the last batch of an epoch when it is short
	// Augment draws a random crop of the image padded by AugmentPad black
	// pixels, then a random horizontal flip, for every sample (meant for
	// 32×32 colour images; training only).
	Augment bool
	Seed    uint64
	// Prefetch is how many batches are prepared ahead of the consumer, by a
	// goroutine; 0 means 1 (double buffering). Negative prepares each batch
	// in Next itself, with no goroutine.
	Prefetch int
	// DType of the batch tensors: engine.Float32 (the default) or
	// engine.Float64 (values converted).
	DType engine.DType
	// Shards > 1 serves shard Shard (from 0) of every batch, for data
	// parallel training: BatchSize is the global batch, which Shards must
	// divide, and every shard is a contiguous, disjoint part of it (a short
	// last batch split as evenly as possible, the first shards taking one
	// more), so the order of the samples does not depend on Shards.
	Shard, Shards int
}

// Batch is one batch of samples. It and everything in it are reused: see
// the package documentation for how long they stay valid.
type Batch struct {
	X       *engine.Tensor // (n, C, H, W) images
	Labels  []int32        // n class indices (classification; nil otherwise)
	Targets *engine.Tensor // (n, 1) scaled targets (regression; nil otherwise)
	Indices []int          // the data set index of each sample
	Epoch   int            // the epoch it belongs to
	Index   int            // its position in the epoch, from 0
	Total   int            // the samples of the whole batch, when this is one shard of it
	Start   int            // the shard's first row within the whole batch
}

// Size is the number of samples in the batch.
func (b *Batch) Size() int { return len(b.Indices) }

// buffer is the memory behind a Batch: a full-size and a short shape
// viewing the same data.
type buffer struct {
	batch         Batch
	xFull, xShort *engine.Tensor
	tFull, tShort *engine.Tensor
	labels        []int32
	indices       []int
}

// Loader serves a Dataset in batches, one epoch at a time.
type Loader struct {
	ds   *Dataset
	opts LoaderOptions
	nb   int // batches per epoch

	bufs  []*buffer
	perm  []int
	free  chan *buffer // buffers the producer may fill
	ready chan *buffer // filled buffers, then nil at the end of the epoch
	stop  chan struct{}
	done  chan struct{} // closed when the producer returns
	cur   *buffer       // the buffer the consumer holds

	epoch, next int // synchronous mode: the epoch and the next batch
	running     bool
	closed      bool
	padValue    []float32 // per channel: a black pixel, normalised
	scratchBuf  []float32 // one sample, for float64 batches (producer only)
}

// NewLoader prepares batching of ds. It starts no goroutine until Start.
func NewLoader(ds *Dataset, o LoaderOptions) (*Loader, error) {
	if ds == nil {
		return nil, errors.New("data: NewLoader: nil data set")
	}
	if err := ds.Validate(); err != nil {
		return nil, err
	}
	if o.BatchSize <= 0 {
		return nil, fmt.Errorf("data: batch size %d must be positive", o.BatchSize)
	}
	if o.DType == 0 {
		o.DType = engine.Float32
	}
	if o.DType != engine.Float32 && o.DType != engine.Float64 {
		return nil, fmt.Errorf("data: loader dtype %v: want float32 or float64", o.DType)
	}
	n := ds.Len()
	l := &Loader{ds: ds, opts: o, nb: BatchesPerEpoch(n, o.BatchSize, o.DropLast), perm: make([]int, n)}
	switch {
	case n == 0:
		return nil, fmt.Errorf("data: %s: no samples", ds.Name)
	case l.nb == 0:
		return nil, fmt.Errorf("data: %s: %d samples make no full batch of %d (drop-last is on)", ds.Name, n, o.BatchSize)
	}
	nbuf := 1
	if o.Prefetch >= 0 {
		nbuf = 1 + max(1, o.Prefetch)
	}
	if o.Shards <= 1 {
		o.Shard, o.Shards = 0, 1
	}
	if o.BatchSize%o.Shards != 0 || o.Shard < 0 || o.Shard >= o.Shards {
		return nil, fmt.Errorf("data: shard %d of %d of a batch of %d: the shards must divide the batch", o.Shard, o.Shards, o.BatchSize)
	}
	l.opts = o
	bs, short := shardRows(o, n)
	for range nbuf {
		b, err := newBuffer(ds, o.DType, bs, short)
		if err != nil {
			return nil, err
		}
		l.bufs = append(l.bufs, b)
	}
	if o.DType == engine.Float64 {
		l.scratchBuf = make([]float32, ds.SampleSize()) // only one batch is filled at a time
	}
	l.padValue = make([]float32, ds.Channels)
	for ch := range l.padValue {
		l.padValue[ch] = float32(-ds.Mean[ch] / ds.Std[ch])
	}
	if o.Prefetch >= 0 {
		l.free = make(chan *buffer, nbuf)
		l.ready = make(chan *buffer, nbuf+1)
	}
	return l, nil
}

// shardRows is the rows of this shard's batch buffers (bs) and of its part of
// an epoch's short last batch (0 when there is none).
func shardRows(o LoaderOptions, n int) (bs, short int) {
	bs = min(o.BatchSize, n) / o.Shards
	short = n % o.BatchSize
	if o.DropLast || n < o.BatchSize {
		short = 0
	}
	if o.Shards > 1 {
		// A data set smaller than one batch is one short batch.
		if n < o.BatchSize {
			short = n
		}
		_, short = shardOf(short, o.Shard, o.Shards)
		bs = max(o.BatchSize/o.Shards, short)
	}
	return bs, short
}

// newBuffer makes one batch buffer of bs samples of ds, with views of its
// first short samples for the epoch's short last batch.
func newBuffer(ds *Dataset, dt engine.DType, bs, short int) (*buffer, error) {
	c, h, w := ds.Channels, ds.Height, ds.Width
	s := ds.SampleSize()
	b := &buffer{indices: make([]int, bs)}
	var err error
	if b.xFull, err = newTensor(dt, bs*s, bs, c, h, w); err != nil {
		return nil, err
	}
	if short > 0 {
		b.xShort, _ = viewTensor(b.xFull, short*s, short, c, h, w)
	}
	if ds.Task == Regression {
		b.tFull, _ = newTensor(dt, bs, bs, 1)
		if short > 0 {
			b.tShort, _ = viewTensor(b.tFull, short, short, 1)
		}
	} else {
		b.labels = make([]int32, bs)
	}
	return b, nil
}

func newTensor(dt engine.DType, n int, shape ...int) (*engine.Tensor, error) {
	if dt == engine.Float64 {
		return engine.FromFloat64(make([]float64, n), shape...)
	}
	return engine.FromFloat32(make([]float32, n), shape...)
}

// viewTensor is the first n values of t with another shape.
func viewTensor(t *engine.Tensor, n int, shape ...int) (*engine.Tensor, error) {
	if t.DType() == engine.Float64 {
		return engine.FromFloat64(t.Float64()[:n], shape...)
	}
	return engine.FromFloat32(t.Float32()[:n], shape...)
}

// Dataset is the data set being served.
func (l *Loader) Dataset() *Dataset { return l.ds }

// BatchesPerEpoch is the number of batches in an epoch (drop-last aware).
func (l *Loader) BatchesPerEpoch() int { return l.nb }

// BatchesPerEpoch is the batches an epoch of n samples makes in batches of
// batch: a short last one counts unless dropLast.
func BatchesPerEpoch(n, batch int, dropLast bool) int {
	nb := n / batch
	if !dropLast && n%batch != 0 {
		nb++
	}
	return nb
}

// SamplesPerEpoch is the number of samples served in an epoch.
func (l *Loader) SamplesPerEpoch() int {
	if l.opts.DropLast {
		return l.nb * l.opts.BatchSize
	}
	return l.ds.Len()
}

// Order returns the sample order of an epoch: a pure function of (seed,
// epoch) when shuffling, the data set's order otherwise.
func (l *Loader) Order(epoch int) []int {
	p := make([]int, l.ds.Len())
	l.order(p, epoch)
	return p
}

func (l *Loader) order(p []int, epoch int) {
	if !l.opts.Shuffle {
		for i := range p {
			p[i] = i
		}
		return
	}
	s := newStream(l.opts.Seed, domainShuffle, uint64(epoch), uint64(len(p)))
	s.permute(p)
}

// Start begins epoch (counted from 0) at batch skip, so a resumed run sees
// the same remaining batches as the run it continues. An epoch in progress
// is abandoned.
func (l *Loader) Start(epoch, skip int) error {
	if l.closed {
		return errors.New("data: Start on a closed loader")
	}
	if epoch < 0 || skip < 0 || skip > l.nb {
		return fmt.Errorf("data: cannot start epoch %d at batch %d (%d batches per epoch)", epoch, skip, l.nb)
	}
	l.halt()
	l.order(l.perm, epoch)
	l.epoch, l.next = epoch, skip
	l.running = true
	if l.opts.Prefetch < 0 {
		return nil
	}
	for _, b := range l.bufs {
		l.free <- b
	}
	l.stop = make(chan struct{})
	l.done = make(chan struct{})
	go l.produce(epoch, skip, l.stop, l.done)
	return nil
}

// Next returns the next batch of the epoch, or false at its end. The batch
// stays valid until the next call to Next, Start or Close.
func (l *Loader) Next() (*Batch, bool) {
	if !l.running {
		return nil, false
	}
	if l.opts.Prefetch < 0 {
		if l.next >= l.nb {
			l.running = false
			return nil, false
		}
		b := l.bufs[0]
		l.fill(b, l.epoch, l.next)
		l.next++
		return &b.batch, true
	}
	if l.cur != nil {
		l.free <- l.cur // never blocks: free has room for every buffer
		l.cur = nil
	}
	b := <-l.ready
	if b == nil {
		l.halt()
		return nil, false
	}
	l.cur = b
	return &b.batch, true
}

// Batches ranges over epoch's batches from batch skip (see Start and Next);
// leaving the loop early stops the producer. An epoch or skip that Start
// refuses yields no batch.
func (l *Loader) Batches(epoch, skip int) iter.Seq[*Batch] {
	return func(yield func(*Batch) bool) {
		if l.Start(epoch, skip) != nil {
			return
		}
		for {
			b, ok := l.Next()
			if !ok {
				return
			}
			if !yield(b) {
				l.halt()
				return
			}
		}
	}
}

// Close stops the producer goroutine, if any, and waits for it. The loader
// cannot be started again.
func (l *Loader) Close() error {
	l.halt()
	l.closed = true
	return nil
}

// halt stops the producer and takes every buffer back.
func (l *Loader) halt() {
	l.running = false
	if l.done == nil {
		return
	}
	close(l.stop)
	<-l.done
	l.stop, l.done, l.cur = nil, nil, nil
	for len(l.free) > 0 {
		<-l.free
	}
	for len(l.ready) > 0 {
		<-l.ready
	}
}

// produce fills batches skip.. of an epoch, handing each to the consumer.
func (l *Loader) produce(epoch, skip int, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for i := skip; i < l.nb; i++ {
		var b *buffer
		select {
		case b = <-l.free:
		case <-stop:
			return
		}
		l.fill(b, epoch, i)
		select {
		case l.ready <- b:
		case <-stop:
			return
		}
	}
	select {
	case l.ready <- nil:
	case <-stop:
	}
}

// fill copies batch i of an epoch into b.
func (l *Loader) fill(b *buffer, epoch, i int) {
	ds := l.ds
	bs := l.opts.BatchSize
	lo := i * bs
	hi := min(lo+bs, ds.Len())
	total := hi - lo
	off, n := shardOf(total, l.opts.Shard, l.opts.Shards)
	lo += off
	hi = lo + n
	idx := b.indices[:n]
	copy(idx, l.perm[lo:hi])
	x := b.xFull
	if n < len(b.indices) {
		x = b.xShort
	}
	s := ds.SampleSize()
	var scratch []float32
	if n == 0 { // an empty shard of a short batch: nil tensors
		x = nil
	} else if x.DType() == engine.Float64 {
		scratch = l.scratchBuf
	}
	for j, k := range idx {
		src := ds.Images[k*s : (k+1)*s]
		var dst []float32
		if scratch != nil {
			dst = scratch
		} else {
			dst = x.Float32()[j*s : (j+1)*s]
		}
		if l.opts.Augment {
			l.augment(dst, src, epoch, k)
		} else {
			copy(dst, src)
		}
		if scratch != nil {
			out := x.Float64()[j*s : (j+1)*s]
			for t, v := range scratch {
				out[t] = float64(v)
			}
		}
	}
	b.batch = Batch{X: x, Indices: idx, Epoch: epoch, Index: i, Total: total, Start: off}
	if ds.Task == Regression {
		t := b.tFull
		if n < len(b.indices) {
			t = b.tShort // nil for an empty shard: the loop does not run
		}
		// Host tensors, as the images above: written through their slices.
		for j, k := range idx {
			if t.DType() == engine.Float64 {
				t.Float64()[j] = float64(ds.Targets[k])
			} else {
				t.Float32()[j] = ds.Targets[k]
			}
		}
		b.batch.Targets = t
	} else {
		labels := b.labels[:n]
		for j, k := range idx {
			labels[j] = ds.Labels[k]
		}
		b.batch.Labels = labels
	}
}

// shardOf is where shard k of shards starts in a batch of total samples,
// and how many it takes: an even split, the first shards one more.
func shardOf(total, k, shards int) (off, n int) {
	q, r := total/shards, total%shards
	return k*q + min(k, r), q + btoi(k < r)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// augment writes src randomly cropped (from the image padded with black by
// AugmentPad pixels) and maybe flipped left to right; the draw depends only
// on (seed, epoch, sample).
func (l *Loader) augment(dst, src []float32, epoch, sample int) {
	ds := l.ds
	h, w := ds.Height, ds.Width
	r := key(l.opts.Seed, domainAugment, uint64(epoch), uint64(sample))
	const span = 2*AugmentPad + 1
	ox := int(r%span) - AugmentPad
	oy := int(r/span%span) - AugmentPad
	flip := (r/(span*span))&1 == 1
	for c := 0; c < ds.Channels; c++ {
		pad := l.padValue[c]
		in := src[c*h*w : (c+1)*h*w]
		out := dst[c*h*w : (c+1)*h*w]
		for y := 0; y < h; y++ {
			row := out[y*w : (y+1)*w]
			sy := y + oy
			if sy < 0 || sy >= h {
				for x := range row {
					row[x] = pad
				}
				continue
			}
			srow := in[sy*w : (sy+1)*w]
			for x := range row {
				sx := x + ox
				if flip {
					sx = w - 1 - x + ox
				}
				if sx < 0 || sx >= w {
					row[x] = pad
				} else {
					row[x] = srow[sx]
				}
			}
		}
	}
}
