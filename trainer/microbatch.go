package trainer

import (
	"fmt"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

// The automatic micro-batch (micro_batch 0). Splitting a step pays where a
// batch's activations overflow the CPU's caches and the passes over them
// are many and cheap: gMLP's layer norms, GELU, gate and residual adds went
// to memory between every two ops at batch 128 on 32×32×3 (8 MB tensors)
// and ran 1.19–1.25× faster in pieces whose largest tensor is 1–2 MiB
// (fp32; bf16 1.31×), 1.05× at 4 MiB a batch, and no faster below. LeNet
// and mlp, whose convolutions and products dominate, ran level or slower in
// pieces (mlp rewrites its 3 MB weight gradient once a piece: 0.68–0.88×),
// so the rule takes only models with layer norms and no batch norm
// (bench/results/intel-xeon-emr-2core-2026-12-06-session32.md). The sizes
// are fixed, not the host's cache sizes, so the pieces a run takes, and so
// its bits, do not depend on the machine's caches.
const (
	autoMicroWholeBytes = 4 << 20 // a batch whose largest layer output is no more than this runs whole
	autoMicroPieceBytes = 2 << 20 // a piece's largest layer output at most this ...
	autoMicroMinRows    = 8       // ... but never fewer rows than this
)

// MicroBatchRule is micro_batch 0's choice for one model: the size of the
// pieces a batch of given rows is split into on a device.
type MicroBatchRule struct {
	// SampleBytes is the largest layer output of one sample (float32), 0
	// for a model the rule leaves whole.
	SampleBytes int64
}

// Size is the micro-batch for a batch of rows on dev: a power of two, or 0
// for the whole batch (on a GPU always).
func (r MicroBatchRule) Size(rows int, dev engine.Device) int {
	if r.SampleBytes <= 0 || dev != engine.CPU || int64(rows)*r.SampleBytes <= autoMicroWholeBytes {
		return 0
	}
	n := autoMicroMinRows
	for int64(2*n)*r.SampleBytes <= autoMicroPieceBytes {
		n *= 2
	}
	if n >= rows {
		return 0
	}
	return n
}

// AutoMicroBatch is model's rule. It runs model forward on one sample in
// evaluation mode (layers.Summarize) for the outputs' sizes, when model is
// a *layers.Model (as the zoo builds them) on the CPU with a layer norm and
// no batch norm; any other model gets the rule that keeps batches whole.
func AutoMicroBatch(model layers.Layer) (MicroBatchRule, error) {
	m, ok := model.(*layers.Model)
	if !ok || !onCPU(m) {
		return MicroBatchRule{}, nil
	}
	var layerNorm, batchNorm bool
	layers.WalkLayers(m, func(_ string, l layers.Layer) {
		switch l.(type) {
		case *layers.LayerNorm:
			layerNorm = true
		case *layers.BatchNorm2D:
			batchNorm = true
		}
	})
	if !layerNorm || batchNorm {
		return MicroBatchRule{}, nil
	}
	sum, err := layers.Summarize(m)
	if err != nil {
		return MicroBatchRule{}, fmt.Errorf("micro_batch 0: %w", err)
	}
	var largest int64
	for _, l := range sum.Layers {
		n := int64(1)
		for _, d := range l.Output {
			n *= int64(d)
		}
		largest = max(largest, n)
	}
	return MicroBatchRule{SampleBytes: 4 * largest}, nil
}

// MicroBatchRuleFor checks micro_batch micro for model (CheckMicroBatch) and
// returns the rule its steps follow: model's at 0, none otherwise.
func MicroBatchRuleFor(model layers.Layer, micro int) (MicroBatchRule, error) {
	if err := CheckMicroBatch(model, micro); err != nil || micro != 0 {
		return MicroBatchRule{}, err
	}
	return AutoMicroBatch(model)
}

func onCPU(m *layers.Model) bool {
	_, params := layers.Params(m)
	return len(params) > 0 && params[0].Value.Device() == engine.CPU
}

// CheckMicroBatch refuses a micro-batch for a model with a layer whose
// output depends on the other rows of its batch: batch norm's statistics
// would be a micro-batch's, not the batch's. 0 (Kiln's choice, which leaves
// such a model whole) and -1 (the whole batch) are always taken.
func CheckMicroBatch(model layers.Layer, micro int) error {
	if micro < -1 {
		return settingErr("micro_batch", micro, "want at least -1 (-1: the whole batch at once; 0: chosen by Kiln)")
	}
	if micro <= 0 {
		return nil
	}
	var bn string
	layers.WalkLayers(model, func(name string, l layers.Layer) {
		if _, ok := l.(*layers.BatchNorm2D); ok && bn == "" {
			bn = name
		}
	})
	if bn != "" {
		return settingErr("micro_batch", micro, "the model's batch norm (%s) would take its statistics over a micro-batch, "+
			"not the batch; leave micro_batch at 0 for this model", bn)
	}
	return nil
}

// microBatchFor is the micro-batch a training step of rows splits into on
// the trainer's device (0: none), as the start of a run logs it.
func (t *Trainer) microBatchFor(rows int) int {
	return microSize(t.Config.MicroBatch, t.autoMicro, rows, t.device)
}
