package trainer

import (
	"fmt"
	"time"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

// TensorAllreducer is a World that sums device tensors where they live
// (NCCL on GPUs), without a copy through host memory.
type TensorAllreducer interface {
	AllreduceSumTensor(t *engine.Tensor) error
}

// GradReducer sums the gradients of data-parallel training over the ranks:
// every parameter's gradient lives in the model's one flat buffer
// (layers.FlattenModelGrads, the buffer a one-process GPU step clears with
// one memset: built once, for both), each rank scales it by its share of
// the global batch, and one all-reduce per step sums it, so that every rank
// holds the gradient of the global batch's mean loss, bit for bit the same.
type GradReducer struct {
	World World
	// BucketBytes, with a World that can start an all-reduce and compute
	// meanwhile (AsyncWorld) and a model on the CPU, sends the gradients in
	// buckets of about this size as the backward pass finishes them
	// (Overlap); 0 sums them in one all-reduce after the pass.
	BucketBytes int
	// Share is this rank's share of the step's global batch, set before the
	// step when buckets go out during its backward pass.
	Share float64

	params  []*layers.Param
	buckets buckets
	flat    *engine.Tensor // the model's (layers.ModelGradBuffer): not this reducer's to free
	host    *engine.Tensor // flat's copy on the host, for device tensors without a TensorAllreducer

	// Comm is the time spent in the all-reduce calls (with the copies
	// through host memory, if any), Calls their number: the communication
	// share of a step that the benchmark reports.
	Comm  time.Duration
	Calls int
}

// Reduce replaces the gradients of params by their weighted sum over the
// ranks, this rank's weighted by share.
func (g *GradReducer) Reduce(params []*layers.Param, share float64) error {
	start := time.Now()
	var err error
	if g.buckets.bounds != nil {
		g.Share = share
		err = g.finish()
	} else {
		err = g.reduceAll(params, share)
	}
	g.Comm += time.Since(start)
	g.Calls++
	if err != nil {
		return fmt.Errorf("all-reduce of the gradients: %w", err)
	}
	return nil
}

// reduceAll is the whole buffer scaled and summed in one all-reduce.
func (g *GradReducer) reduceAll(params []*layers.Param, share float64) error {
	if err := g.ensureFlat(params); err != nil {
		return err
	}
	if err := engine.Scale(g.flat, share); err != nil {
		return err
	}
	return g.allreduce()
}

// ensureFlat makes the gradients of params, a model's in its order, views
// of the model's flat buffer, unless they are already.
func (g *GradReducer) ensureFlat(params []*layers.Param) error {
	if layers.GradsIn(g.flat, params) {
		return nil
	}
	g.Release()
	if err := layers.FlattenModelGrads(params); err != nil {
		return err
	}
	g.flat = layers.ModelGradBuffer(params)
	return nil
}

func (g *GradReducer) allreduce() error {
	if g.flat.Device() == engine.CPU {
		if g.flat.Float32() == nil {
			return fmt.Errorf("data-parallel training needs float32 gradients, not %v", g.flat.DType())
		}
		return g.World.AllreduceSumFloat32(g.flat.Float32())
	}
	if d, ok := g.World.(TensorAllreducer); ok {
		return d.AllreduceSumTensor(g.flat)
	}
	host, err := engine.ToCPU(g.host, g.flat)
	if err != nil {
		return err
	}
	g.host = host
	if err := g.World.AllreduceSumFloat32(host.Float32()); err != nil {
		return err
	}
	return g.flat.CopyFrom(host)
}

// Release forgets the flat buffer, which the model owns and frees
// (layers.Release), and drops the host copy.
func (g *GradReducer) Release() {
	g.flat, g.host = nil, nil
}
