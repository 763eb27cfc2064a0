package trainer

import (
	"fmt"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer/data"
)

// Where a trainer runs. On the GPU the parameters, gradients, optimiser
// state and layer buffers live in device memory; each step uploads its batch
// into one reused device buffer and brings back only the loss and the count
// of correct predictions. Evaluation brings back the logits for the metrics.

// defaultDevice is where NewTrainer puts a model (the CLI's --device).
var defaultDevice engine.Device

// SetDefaultDevice makes NewTrainer place every model on d (open it first,
// e.g. with engine.OpenDevice).
func SetDefaultDevice(d engine.Device) { defaultDevice = d }

// DefaultDevice is where NewTrainer places models.
func DefaultDevice() engine.Device { return defaultDevice }

// SetDevice moves the model to device d (opening it first). Call it before
// Fit, Evaluate or Predict; the optimiser's state is made on the device on
// its first step, and a resumed checkpoint is copied into it.
func (t *Trainer) SetDevice(d engine.Device) error {
	if d == t.device {
		return nil
	}
	if d != engine.CPU && t.Config.MicroBatch > 0 {
		return fmt.Errorf("micro_batch %d: micro-batches run on the CPU only (on the %v each one's loss would be read back mid-step)",
			t.Config.MicroBatch, d)
	}
	if _, err := engine.OpenDevice(d); err != nil {
		return err
	}
	if err := layers.ToDevice(t.Model, d); err != nil {
		return err
	}
	t.device = d
	return layers.SetPrecision(t.Model, t.precision) // the move made fp32 tensors
}

// SetPrecision makes the model's products compute in p (layers.SetPrecision):
// an error, changing nothing, when the trainer's device cannot.
func (t *Trainer) SetPrecision(p engine.Precision) error {
	if err := layers.SetPrecision(t.Model, p); err != nil {
		return err
	}
	t.precision = p
	return nil
}

// Precision is what the model's products compute in.
func (t *Trainer) Precision() engine.Precision { return t.precision }

// Device is where the trainer runs.
func (t *Trainer) Device() engine.Device { return t.device }

// onDevice returns x on the trainer's device, uploading it into *buf (made
// once, reused while the shape stays, released when it changes).
func (t *Trainer) onDevice(buf **engine.Tensor, x *engine.Tensor) (*engine.Tensor, error) {
	if x == nil || x.Device() == t.device {
		return x, nil
	}
	if *buf == nil || !(*buf).SameShape(x.Shape()...) || (*buf).Released() {
		engine.Drop(buf)
		b, err := engine.NewOn(t.device, engine.Float32, x.Shape()...)
		if err != nil {
			return nil, fmt.Errorf("batch to %v: %w", t.device, err)
		}
		*buf = b
	}
	return *buf, (*buf).CopyFrom(x)
}

// onHost returns a CPU copy of a result on the device, in *buf.
func onHost(buf **engine.Tensor, x *engine.Tensor) (*engine.Tensor, error) {
	h, err := engine.ToCPU(*buf, x)
	if err == nil && x.Device() != engine.CPU {
		*buf = h
	}
	return h, err
}

// gpuData is a training set kept in device memory when it fits: each step
// then gathers its batch there from the batch's indices (engine.GatherRows)
// instead of uploading images. Augmented batches differ from the stored
// images, so augmentation keeps the upload path.
type gpuData struct {
	images *engine.Tensor // (N, C, H, W) on the device
	batch  *engine.Tensor
}

// maxGPUDataFraction bounds the share of free device memory a data set may
// take; the rest is for the model, its activations and the cache.
const maxGPUDataFraction = 0.25

func (t *Trainer) dataOnDevice(ds *data.Dataset) *gpuData {
	if t.device != engine.CUDA || t.Config.Augment || ds.Len() == 0 {
		return nil
	}
	bytes := int64(4 * len(ds.Images))
	free, _ := engine.DeviceMemory()
	if float64(bytes) > maxGPUDataFraction*float64(free) {
		t.Log.Info().Int64("bytes", bytes).Int64("free", free).Msg("training set stays on the host (too large for the GPU)")
		return nil
	}
	host, err := engine.FromFloat32(ds.Images, ds.Len(), ds.Channels, ds.Height, ds.Width)
	if err != nil {
		return nil
	}
	dev, err := host.To(engine.CUDA)
	if err != nil {
		t.Log.Info().Err(err).Msg("training set stays on the host")
		return nil
	}
	t.Log.Info().Int("samples", ds.Len()).Int64("bytes", bytes).Msg("training set on the GPU")
	return &gpuData{images: dev}
}

// batch gathers the samples of b from the data set on the device.
func (g *gpuData) gather(b *data.Batch) (*engine.Tensor, error) {
	shape := b.X.Shape()
	if g.batch == nil || !g.batch.SameShape(shape...) {
		engine.Drop(&g.batch)
		x, err := engine.NewOn(engine.CUDA, engine.Float32, shape...)
		if err != nil {
			return nil, err
		}
		g.batch = x
	}
	return g.batch, engine.GatherRows(g.batch, g.images, b.Indices)
}

// batchOnDevice returns the batch's images on the trainer's device.
func (t *Trainer) batchOnDevice(g *gpuData, b *data.Batch) (*engine.Tensor, error) {
	if g != nil {
		return g.gather(b)
	}
	return t.onDevice(&t.xDev, b.X)
}
