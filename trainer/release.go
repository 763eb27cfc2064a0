package trainer

import (
	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

// Device memory a trainer makes is freed at known points, not by the garbage
// collector (engine/devmem.go): the batch upload buffer and the optimiser's
// state live as long as the trainer, an evaluation's or a prediction's
// upload until it returns, and the training set kept on the device until Fit
// (or whoever called KeepOnDevice) is done with it. Release frees the rest.

// Release frees the device memory of the trainer and its model: parameters,
// gradients and layer buffers (layers.Release), the optimiser's state, the
// trainer's own buffers and the engine's op scratch (engine.ReleaseScratch,
// made again by the next op that needs it). Neither the trainer nor its
// model may be used on the device afterwards.
// A process that trains several models in turn (kiln tune, the benchmarks)
// calls it after each.
func (t *Trainer) Release() {
	layers.Release(t.Model)
	ReleaseOptimizer(t.opt)
	if t.classifier != nil {
		t.classifier.ReleaseBuffers()
	}
	if t.regressor != nil {
		t.regressor.ReleaseBuffers()
	}
	t.grads.Release()
	engine.Drop(&t.xDev, &t.yDev, &t.evX)
	engine.ReleaseScratch()
}

// ReleaseOptimizer frees an optimiser's device state, if it keeps any
// (SGD's momentum, AdamW's moments); its next step makes it anew.
func ReleaseOptimizer(o Optimizer) {
	if r, ok := o.(interface{ Release() }); ok {
		r.Release()
	}
}

// Release frees the momentum buffers.
func (o *SGD) Release() {
	for i := range o.bufs {
		engine.Drop(&o.bufs[i])
	}
	o.bufs = nil
}

// Release frees the moment estimates and Adam's decayed gradients; the
// step count stays.
func (o *AdamW) Release() {
	for i := range o.m {
		engine.Drop(&o.m[i], &o.v[i])
	}
	for i := range o.l2g {
		engine.Drop(&o.l2g[i])
	}
	o.m, o.v, o.l2g = nil, nil, nil
}

// ReleaseBuffers frees the loss's buffers (made again by the next step).
func (c *Classifier) ReleaseBuffers() {
	engine.Drop(&c.probs, &c.dlogits)
	c.views = dropViews(c.views)
}

// ReleaseBuffers frees the loss's buffer (made again by the next step).
func (r *Regressor) ReleaseBuffers() {
	engine.Drop(&r.dpred)
	r.views, r.tviews = dropViews(r.views), dropViews(r.tviews)
}

// dropViews lets go of the micro-batches' views of a batch (they hold its
// data; the next step makes them again).
func dropViews(v []*engine.Tensor) []*engine.Tensor {
	clear(v)
	return v[:0]
}

// Release frees the training set's device copy and its batch buffer. Nil
// (a set kept on the host) is fine.
func (d *DeviceData) Release() {
	if d != nil && d.g != nil {
		engine.Drop(&d.g.images, &d.g.batch)
	}
}
