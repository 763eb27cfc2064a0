package trainer

import (
	"time"

	"github.com/kiln-ml/kiln/layers"
)

// Overlapping the all-reduce with the backward pass (as PyTorch DDP's
// buckets do): a model's top-level layers own consecutive parts of the flat
// gradient buffer, and the backward pass finishes them from the last to the
// first. Once the finished, unsent tail of the buffer holds BucketBytes, it
// is scaled and its all-reduce started, and the pass goes on while MPI sums
// it; Reduce sends what is left and waits. The buckets follow from the
// model's structure and BucketBytes alone, so every rank starts the same
// all-reduces in the same order, an idle rank (an empty shard) included.

// DefaultBucketBytes is the bucket size of data-parallel training on CPUs
// (Trainer.BucketBytes 0). On one machine's cores the buckets neither won
// nor cost anything measurable (bench/results/intel-xeon-2core-2026-12-02-
// ranks-overlap.md: the time in the all-reduce there is one rank waiting for
// the other); across machines the transfer itself is what they hide.
const DefaultBucketBytes = 64 << 10

// AsyncWorld is a World that can start an all-reduce and let its caller
// compute while it runs.
type AsyncWorld interface {
	StartAllreduceSumFloat32(buf []float32) (Pending, error)
}

// Pending is an all-reduce under way: Test moves it on, Wait ends it.
type Pending interface {
	Test() (bool, error)
	Wait() error
}

// buckets is one step's overlapped all-reduce.
type buckets struct {
	bounds  []int // where each top-level layer's part of the buffer begins, and its end
	active  bool  // a step's buckets are under way
	next    int   // the layer whose part ends the unsent tail
	sent    int   // flat[sent:] is sent
	share   float64
	pending []Pending
}

// Overlap makes the reducer start buckets as model's backward pass
// finishes its layers (model.AfterBackward), for a world that can; params
// are the model's, in order. The model must be on the CPU; BucketBytes 0
// keeps one all-reduce after the pass.
func (g *GradReducer) Overlap(model *layers.Model, params []*layers.Param) {
	if _, ok := g.World.(AsyncWorld); !ok || g.BucketBytes <= 0 {
		return
	}
	g.params = params
	g.buckets.bounds = []int{}
	off := 0
	seen := map[*layers.Param]bool{}
	for _, l := range model.Layers() {
		g.buckets.bounds = append(g.buckets.bounds, off)
		_, ps := layers.Params(l)
		for _, p := range ps {
			// A parameter two layers share (tied weights) is in the flat
			// buffer once, in its first layer's part: its gradient is final
			// when that layer, the last of them backward, is done.
			if !seen[p] {
				seen[p] = true
				off += p.Grad.Len()
			}
		}
	}
	g.buckets.bounds = append(g.buckets.bounds, off)
	model.AfterBackward = g.layerDone
}

// begin starts a step's buckets: the flat buffer ready, nothing sent.
func (g *GradReducer) begin(params []*layers.Param) error {
	if err := g.ensureFlat(params); err != nil {
		return err
	}
	b := &g.buckets
	b.active, b.share = true, g.Share
	b.next = len(b.bounds) - 1
	b.sent = b.bounds[b.next]
	b.pending = b.pending[:0]
	return nil
}

// layerDone is the model's AfterBackward: layer i's gradients, and those of
// every layer after it, are final. Its time counts as communication.
func (g *GradReducer) layerDone(i int) error {
	start := time.Now()
	defer func() { g.Comm += time.Since(start) }()
	return g.tailsDone(i)
}

// tailsDone sends the buckets that layers i and after complete.
func (g *GradReducer) tailsDone(i int) error {
	b := &g.buckets
	if !b.active {
		if err := g.begin(g.params); err != nil {
			return err
		}
	}
	for ; b.next > i; b.next-- {
		if err := g.tailDone(b.next - 1); err != nil {
			return err
		}
	}
	for _, p := range b.pending { // MPI moves nonblocking sums on inside its calls
		if _, err := p.Test(); err != nil {
			return err
		}
	}
	return nil
}

// tailDone sends the unsent tail once layer i's part completes a bucket.
func (g *GradReducer) tailDone(i int) error {
	b := &g.buckets
	if 4*(b.sent-b.bounds[i]) < g.BucketBytes {
		return nil
	}
	return g.send(b.bounds[i])
}

// send scales flat[from:sent] by the share and starts its all-reduce.
func (g *GradReducer) send(from int) error {
	b := &g.buckets
	part := g.flat.Float32()[from:b.sent]
	s := float32(b.share)
	for i := range part {
		part[i] *= s
	}
	p, err := g.World.(AsyncWorld).StartAllreduceSumFloat32(part)
	if err != nil {
		return err
	}
	b.pending = append(b.pending, p)
	b.sent = from
	return nil
}

// finish completes the step's buckets: those an idle rank (or a layer that
// reported nothing) has not started yet, the rest of the buffer, then waits
// for every one.
func (g *GradReducer) finish() error {
	b := &g.buckets
	if err := g.tailsDone(0); err != nil {
		return err
	}
	if b.sent > 0 {
		if err := g.send(0); err != nil {
			return err
		}
	}
	for _, p := range b.pending {
		if err := p.Wait(); err != nil {
			return err
		}
	}
	b.active = false
	return nil
}
