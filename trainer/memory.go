package trainer

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer/data"
	"gorgonia.org/tensor"
)

// EstimateMemory measures what one training step of batch size `batch` needs:
// parameters, gradients and optimiser state, plus the activations and
// gradients of a probe step on two samples, scaled to the batch. The model's
// state is restored afterwards, so the probe changes nothing.
func (t *Trainer) EstimateMemory(ds *data.Dataset, batch int) (int64, error) {
	params := int64(0)
	for _, p := range t.params {
		params += int64(p.Value.Len())
	}
	states := int64(1)
	switch t.opt.(type) {
	case *AdamW:
		states = 2
	case *SGD:
		if t.Config.Momentum == 0 {
			states = 0
		}
	}
	fixed := params * 4 * (2 + states)
	probe := min(2, ds.Len())
	if probe == 0 {
		return fixed, nil
	}
	saved := map[string]*engine.Tensor{}
	for name, v := range layers.FullState(t.Model) {
		saved[name] = v.Clone()
	}
	x := engine.New(engine.Float32, probe, ds.Channels, ds.Height, ds.Width)
	copy(x.Float32(), ds.Images[:x.Len()])
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	out, err := t.Model.Forward(x)
	if err == nil {
		dy := engine.New(engine.Float32, out.Shape()...)
		_, err = t.Model.Backward(dy)
	}
	runtime.ReadMemStats(&after)
	layers.ZeroGrad(t.Model)
	if lerr := layers.LoadState(t.Model, saved); lerr != nil && err == nil {
		err = lerr
	}
	if err != nil {
		return 0, fmt.Errorf("memory probe: %w", err)
	}
	perSample := int64(after.TotalAlloc-before.TotalAlloc) / int64(probe)
	// Scratch buffers and the data loader's prefetch roughly double the
	// per-sample figure.
	return fixed + 2*perSample*int64(batch), nil
}

func (t *Trainer) checkMemory(ds *data.Dataset) error {
	if t.device != engine.CPU {
		// On the GPU the allocator reports a request that does not fit,
		// with the figures, at the step that makes it.
		return nil
	}
	need, err := t.EstimateMemory(ds, t.Config.Batch)
	if err != nil {
		return err
	}
	avail, source := availableMemory()
	if t.Config.MemoryLimitMB > 0 {
		avail, source = int64(t.Config.MemoryLimitMB)<<20, "--memory-limit-mb"
	}
	t.Log.Info().Str("estimate", mib(need)).Str("available", mib(avail)).Str("from", source).Msg("memory")
	if avail > 0 && need > avail {
		return fmt.Errorf("batch %d needs about %s but only %s is available (%s); use a smaller --batch",
			t.Config.Batch, mib(need), mib(avail), source)
	}
	return nil
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// availableMemory reads MemAvailable from /proc/meminfo (0 when unknown).
func availableMemory() (int64, string) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemAvailable:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err == nil {
				return kb << 10, "MemAvailable"
			}
		}
	}
	return 0, "unknown"
}

// Predict runs the model in evaluation mode on a batch (N,C,H,W) and returns
// its outputs (N, classes) as a new Dense: logits, or the scaled target for
// regression.
func (t *Trainer) Predict(x *tensor.Dense) (*tensor.Dense, error) {
	in, err := engine.FromDense(x)
	if err != nil {
		return nil, err
	}
	if in.DType() != engine.Float32 {
		in = in.As(engine.Float32)
	}
	if in, err = t.onDevice(&t.evX, in); err != nil {
		return nil, err
	}
	t.Model.SetTraining(false)
	defer t.Model.SetTraining(true)
	out, err := t.Model.Forward(in)
	if err != nil {
		return nil, err
	}
	if out.Device() != engine.CPU {
		h, err := engine.ToCPU(nil, out)
		if err != nil {
			return nil, err
		}
		return h.Dense(), nil
	}
	return out.Clone().Dense(), nil
}
