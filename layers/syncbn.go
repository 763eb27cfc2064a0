package layers

import (
	"fmt"

	"github.com/kiln-ml/kiln/engine"
)

// Synchronised batch norm (--sync-bn, PyTorch's nn.SyncBatchNorm): in
// data-parallel training each rank holds a shard of the global batch, and a
// BatchNorm2D given a reducer normalises with the statistics of the whole
// global batch instead of its shard's. Each training-mode pass calls the
// reducer once, on every rank alike, also on a rank whose shard is empty:
// collectives must match. Evaluation mode is unchanged (running statistics).
//
// The trainer's part of the contract: each rank's loss is its shard's mean
// loss, and before the optimiser each rank's gradients are multiplied by its
// share s = n_r/N of the global batch and added over ranks. The backward
// pass returns dx in those units (engine.BatchNormSyncBackward derives it),
// and dgamma and dbeta are the rank's own sums, which that weighted sum
// completes.

// SyncBatchNorm gives every BatchNorm2D in l the reducer reduce, or takes it
// away when reduce is nil, and returns how many it found. reduce must replace
// buf, on every rank, by its element-wise sum over the ranks, the same bits
// everywhere (an all-reduce); a rank's error from it fails that pass.
func SyncBatchNorm(l Layer, reduce func(buf []float64) error) int {
	n := 0
	WalkLayers(l, func(_ string, l Layer) {
		if b, ok := l.(*BatchNorm2D); ok {
			b.sync.reduce = reduce
			n++
		}
	})
	return n
}

// batchNormSync is a BatchNorm2D's synchronisation state.
type batchNormSync struct {
	reduce func(buf []float64) error
	// synced says the last training-mode Forward was synchronised, so its
	// Backward must be too.
	synced bool
	// stats holds the forward pass's sums (count, Σx, Σx² per channel),
	// grads the backward pass's (Σdout, Σdout·x̂); kept to allocate nothing.
	stats, grads []float64
	// count is the global batch's values per channel, share this rank's
	// fraction of them.
	count, share float64
}

// syncForward normalises x with the global batch's statistics; b.out, b.mean
// and b.invStd are sized already.
func (b *BatchNorm2D) syncForward(x *engine.Tensor) error {
	s := &b.sync
	if x.Device() != engine.CPU {
		return fmt.Errorf("BatchNorm2D: --sync-bn runs on the CPU so far (the input is on %v)", x.Device())
	}
	c := b.Weight.Value.Len()
	if c == 0 {
		return &engine.ShapeError{Op: "BatchNorm2D", Msg: "synchronised batch norm needs channels"}
	}
	s.stats = ensureFloats(s.stats, 3*c)
	if err := engine.BatchNormSums(s.stats, x); err != nil {
		return err
	}
	local := s.stats[0]
	if err := s.reduce(s.stats); err != nil {
		return fmt.Errorf("BatchNorm2D: all-reduce of the batch statistics: %w", err)
	}
	s.count = s.stats[0]
	s.share = 0
	if s.count > 0 {
		s.share = local / s.count
	}
	err := engine.BatchNormSyncStats(b.mean, b.invStd, b.RunningMean.Value, b.RunningVar.Value, s.stats,
		b.Momentum, b.Eps)
	if err != nil {
		return err
	}
	return engine.BatchNormNormalize(b.out, x, b.mean, b.invStd, b.Weight.Value, b.Bias.Value)
}

// syncBackward writes b.dx (sized already) and adds this rank's own sums into
// the parameters' gradients; the reducer adds the share-weighted sums.
func (b *BatchNorm2D) syncBackward(dout *engine.Tensor) error {
	s := &b.sync
	if s.reduce == nil {
		return &engine.ShapeError{Op: "BatchNorm2D.Backward",
			Msg: "the forward pass was synchronised but the reducer has been taken away since"}
	}
	s.grads = ensureFloats(s.grads, 2*b.Weight.Value.Len())
	err := engine.BatchNormBackwardSums(s.grads, b.Weight.Grad, b.Bias.Grad, dout, b.x, b.mean, b.invStd)
	if err != nil {
		return err
	}
	for i := range s.grads {
		s.grads[i] *= s.share
	}
	if err := s.reduce(s.grads); err != nil {
		return fmt.Errorf("BatchNorm2D: all-reduce of the gradient sums: %w", err)
	}
	return engine.BatchNormSyncBackward(b.dx, dout, b.x, b.mean, b.invStd, b.Weight.Value, s.grads, s.count, s.share)
}

func ensureFloats(buf []float64, n int) []float64 {
	if cap(buf) < n {
		return make([]float64, n)
	}
	return buf[:n]
}
