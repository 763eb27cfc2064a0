package trainer

import (
	"context"
	"testing"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer/data"
)

// firstSamples is the first n samples of ds.
func firstSamples(t *testing.T, ds *data.Dataset, n int) *data.Dataset {
	t.Helper()
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	s, err := ds.Select(idx)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Device memory has owners that free it at known points, not the garbage
// collector: once the first steps have sized every buffer, training,
// validation and prediction leave the allocator's bytes in use where they
// were, a pass of another batch shape replaces buffers instead of adding
// to them, and releasing the trainer gives back everything the model, its
// optimiser and the trainer took. On the emulator it runs every kernel on
// the CPU against the real caching allocator.
func TestCUDADeviceMemoryHasOwners(t *testing.T) {
	cudaOrSkip(t)
	mn := smallMNIST(t)
	train, val := firstSamples(t, mn.Train, 64), firstSamples(t, mn.Val, 16)
	c := DefaultConfig()
	c.Epochs, c.Batch, c.Schedule = 2, 16, "constant"
	engine.ReleaseScratch() // another test's cross-entropy scratch
	base := cuda.Memory().InUse

	model, err := layers.Build("lenet", layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(c, model)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.SetDevice(engine.CUDA); err != nil {
		t.Fatal(err)
	}
	inUse := func() int64 { return cuda.Memory().InUse }

	// Steps of one batch shape, with the training set on the device.
	loader, err := data.NewLoader(train, data.LoaderOptions{BatchSize: c.Batch, DropLast: true, Prefetch: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer loader.Close()
	onDev := tr.KeepOnDevice(train)
	if onDev == nil {
		t.Fatal("the training set did not go to the device")
	}
	var afterStep2 int64
	step := 0
	for b := range loader.Batches(0, 0) {
		if _, _, err := tr.TrainOnBatch(onDev, b, 0.01); err != nil {
			t.Fatal(err)
		}
		if step++; step == 2 {
			afterStep2 = inUse()
		} else if step > 2 && inUse() != afterStep2 {
			t.Fatalf("step %d: %d bytes in use, %d after step 2", step, inUse(), afterStep2)
		}
	}
	if _, err := tr.Evaluate(val); err != nil {
		t.Fatal(err)
	}
	if got := inUse(); got != afterStep2 {
		t.Errorf("after Evaluate: %d bytes in use, %d before", got, afterStep2)
	}
	if _, err := tr.Predict(val.ImagesDense()); err != nil {
		t.Fatal(err)
	}
	if got := inUse(); got != afterStep2 {
		t.Errorf("after Predict: %d bytes in use, %d before", got, afterStep2)
	}
	x, err := firstSamples(t, mn.Val, 20).ImagesTensor()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Outputs(x); err != nil { // batch 20: every buffer changes shape
		t.Fatal(err)
	}
	for b := range loader.Batches(1, 0) {
		if _, _, err := tr.TrainOnBatch(onDev, b, 0.01); err != nil {
			t.Fatal(err)
		}
		break
	}
	if got := inUse(); got != afterStep2 {
		t.Errorf("a step after a pass of 20: %d bytes in use, %d after step 2 (replaced buffers piled up)", got, afterStep2)
	}
	onDev.Release()
	if got, want := inUse(), afterStep2-int64(4*len(train.Images))-int64(4*c.Batch*train.SampleSize()); got != want && !engine.CUDADeviceIsReal() {
		t.Errorf("after releasing the training set: %d bytes in use, want %d", got, want)
	}

	// Fit: every epoch ends with the same bytes in use, and the run with
	// what it found (its own copy of the training set released).
	beforeFit := inUse()
	var epochEnds []int64
	tr.Callbacks.OnEpochEnd = func(MetricsRecord) bool { epochEnds = append(epochEnds, inUse()); return false }
	if _, err := tr.Fit(context.Background(), &data.Splits{Train: firstSamples(t, train, 2*c.Batch), Val: val}); err != nil {
		t.Fatal(err)
	}
	if len(epochEnds) != c.Epochs || epochEnds[0] != epochEnds[len(epochEnds)-1] {
		t.Errorf("bytes in use at the epochs' ends: %v (want %d equal figures)", epochEnds, c.Epochs)
	}
	if got := inUse(); got != beforeFit {
		t.Errorf("after Fit: %d bytes in use, %d before", got, beforeFit)
	}

	tr.Release()
	if got := inUse(); got != base {
		t.Errorf("after Release: %d bytes in use, %d before the model was built", got, base)
	}
}

// The gradients have one flat buffer on the GPU, built once: a model whose
// one-process steps flattened them (a memset's worth) and that then trains
// data parallel all-reduces that same buffer, taking no second gradient's
// memory, and the reducer's Release leaves it to the model.
func TestCUDAReducerAllreducesTheModelsFlatBuffer(t *testing.T) {
	cudaOrSkip(t)
	s := layers.Spec{Channels: 1, Height: 12, Width: 12, Classes: 10, Seed: 1}
	m, err := layers.Build("lenet", s)
	if err != nil {
		t.Fatal(err)
	}
	if err := layers.ToDevice(m, engine.CUDA); err != nil {
		t.Fatal(err)
	}
	defer layers.Release(m)
	c := NewClassifier(m, &SGD{})
	defer c.ReleaseBuffers()
	x, labels := syntheticBatch(2, s)
	if x, err = x.To(engine.CUDA); err != nil {
		t.Fatal(err)
	}
	defer x.Release()
	if _, _, err := c.TrainStep(x, labels, 0.1); err != nil {
		t.Fatal(err)
	}
	flat := layers.ModelGradBuffer(c.Params())
	if flat == nil {
		t.Fatal("a GPU step left the gradients outside one flat buffer")
	}
	before := cuda.Memory().InUse
	r := &GradReducer{World: newMemWorlds(1)[0]}
	if err := r.Reduce(c.Params(), 1); err != nil {
		t.Fatal(err)
	}
	if r.flat != flat || layers.ModelGradBuffer(c.Params()) != flat {
		t.Error("the reducer all-reduced a buffer other than the model's")
	}
	r.Release()
	if grew := cuda.Memory().InUse - before; grew > 0 {
		t.Errorf("the reducer took %d bytes more than the model's flat buffer", grew)
	}
	if layers.ModelGradBuffer(c.Params()) != flat || flat.Released() {
		t.Error("the reducer's Release freed the model's buffer")
	}
}
