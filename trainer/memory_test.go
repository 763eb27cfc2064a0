package trainer

import (
	"runtime"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer/data"
)

// wide is a csv-like data set: n samples of f features (C=f, H=W=1).
func wide(t *testing.T, n, f int) *data.Dataset {
	t.Helper()
	x := engine.New(engine.Float32, n, f, 1, 1)
	labels := make([]int32, n)
	for i := range labels {
		labels[i] = int32(i % 3)
	}
	ds, err := data.NewClassification("wide", x, labels, []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

func wideTrainer(t *testing.T, ds *data.Dataset, hidden int) *Trainer {
	t.Helper()
	c := DefaultConfig()
	c.Model, c.Dataset, c.Hidden = "mlp", "csv", hidden
	m, err := layers.Build("mlp", layers.Spec{Channels: ds.Channels, Height: 1, Width: 1, Classes: 3, Hidden: hidden})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTrainer(c, m)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// The estimate is of what the run holds at its peak, so it counts the data
// set the run trains on and the loader's batches as well as the model: on a
// wide csv the samples outweigh a small network.
func TestEstimateMemoryCountsTheDataAndTheLoader(t *testing.T) {
	ds := wide(t, 2000, 4096) // 32 MiB of samples
	tr := wideTrainer(t, ds, 16)
	got, err := tr.EstimateMemory(ds, 64)
	if err != nil {
		t.Fatal(err)
	}
	params := int64(layers.CountParams(tr.Model))
	samples := int64(len(ds.Images)+len(ds.Labels)) * 4
	loader := int64(2 * 64 * ds.SampleSize() * 4)
	if want := params*4*3 + samples + loader; got < want {
		t.Errorf("estimate %d bytes; the parameters, gradients and momentum (%d), the samples (%d) and the loader's two batches (%d) alone are %d",
			got, params*4*3, samples, loader, want)
	}
}

// The memory probe must not copy the parameters to restore them (it changes
// none of them): the copy is garbage the collector may not reclaim before
// the optimiser's state is allocated, so on a large model it raised the
// peak by a whole model's size.
func TestMemoryProbeDoesNotCopyTheParameters(t *testing.T) {
	ds := wide(t, 8, 2048)
	tr := wideTrainer(t, ds, 2048) // 8.4 M parameters, 34 MB
	params := int64(layers.CountParams(tr.Model)) * 4
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := tr.EstimateMemory(ds, 64); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if alloc := int64(after.TotalAlloc - before.TotalAlloc); alloc > params/4 {
		t.Errorf("the probe allocated %d bytes for a model of %d bytes of parameters", alloc, params)
	}
}

// A model that cannot fit is refused from its configuration, before a byte
// of it is allocated, with the knob that made it large in the message.
func TestBuildModelRefusesBeforeAllocating(t *testing.T) {
	c := DefaultConfig()
	c.Model, c.Hidden = "mlp", 100_000_000
	spec := layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Hidden: c.Hidden}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	m, err := BuildModel(c, spec)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatalf("built a model of %d parameters", layers.CountParams(m))
	}
	for _, want := range []string{"mlp", "parameters", "--hidden"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
		t.Errorf("allocated %d bytes before refusing", alloc)
	}

	// A limit refuses what the machine would take, and a model within it
	// builds.
	c.Hidden, spec.Hidden, c.MemoryLimitMB = 512, 512, 1
	if _, err := BuildModel(c, spec); err == nil || !strings.Contains(err.Error(), "--memory-limit-mb") {
		t.Errorf("a 0.7M-parameter model under a 1 MiB limit: %v", err)
	}
	c.MemoryLimitMB = 64
	if m, err := BuildModel(c, spec); err != nil || layers.CountParams(m) == 0 {
		t.Errorf("a 0.7M-parameter model under a 64 MiB limit: %v", err)
	}
}

// A batch larger than the data set is one step of all of it (as a
// DataLoader's last batch): its estimate is that of a batch of the whole
// set, not of the batch asked for, which would refuse a run that fits.
func TestEstimateMemoryOfABatchLargerThanTheData(t *testing.T) {
	ds := wide(t, 50, 256)
	tr := wideTrainer(t, ds, 16)
	whole, err := tr.EstimateMemory(ds, ds.Len())
	if err != nil {
		t.Fatal(err)
	}
	huge, err := tr.EstimateMemory(ds, 1_000_000)
	if err != nil {
		t.Fatal(err)
	}
	// (The probe's allocations vary a little from call to call.)
	if huge > 2*whole {
		t.Errorf("batch 1000000 over %d samples: estimate %d bytes, a batch of all %d: %d", ds.Len(), huge, ds.Len(), whole)
	}
}

// In micro-batches a step holds one micro-batch's activations: the
// estimate of batch 512 in pieces of 16 is that of batch 16 but for the
// loader's batches.
func TestEstimateMemoryOfMicroBatches(t *testing.T) {
	ds := wide(t, 600, 1024)
	tr := wideTrainer(t, ds, 256)
	whole, err := tr.EstimateMemory(ds, 512)
	if err != nil {
		t.Fatal(err)
	}
	tr.Config.MicroBatch = 16
	pieces, err := tr.EstimateMemory(ds, 512)
	if err != nil {
		t.Fatal(err)
	}
	loaderGap := loaderBytes(ds, 512) - loaderBytes(ds, 16)
	small, err := tr.EstimateMemory(ds, 16)
	if err != nil {
		t.Fatal(err)
	}
	if pieces >= whole || pieces > small+loaderGap+small/2 {
		t.Errorf("batch 512 in pieces of 16: estimate %d bytes; whole %d, batch 16 %d (+%d of loader)", pieces, whole, small, loaderGap)
	}
}

// A batch too large for memory is refused with a way out: a smaller batch,
// or micro-batches where the model takes them (not with batch norm).
func TestTooLargeABatchSuggestsMicroBatches(t *testing.T) {
	ds := wide(t, 600, 1024)
	tr := wideTrainer(t, ds, 256)
	tr.Config.MemoryLimitMB = 1
	err := tr.checkMemory(ds)
	if err == nil || !strings.Contains(err.Error(), "--micro-batch") {
		t.Errorf("mlp over a 1 MiB limit: %v", err)
	}
	c := DefaultConfig()
	c.MemoryLimitMB = 1
	cnn, err := NewTrainer(c, buildMicro(t, "cnn", layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 3}))
	if err != nil {
		t.Fatal(err)
	}
	images, err := data.NewClassification("images", engine.New(engine.Float32, 10, 1, 28, 28), make([]int32, 10),
		[]string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	if err := cnn.checkMemory(images); err == nil || !strings.Contains(err.Error(), "use a smaller --batch") ||
		strings.Contains(err.Error(), "--micro-batch") {
		t.Errorf("cnn (batch norm) over a 1 MiB limit: %v", err)
	}
	// At batch 1 a smaller batch is no way out.
	cnn.Config.Batch = 1
	if err := cnn.checkMemory(images); err == nil || !strings.Contains(err.Error(), "--image-size") ||
		strings.Contains(err.Error(), "--batch") {
		t.Errorf("cnn at batch 1 over a 1 MiB limit: %v", err)
	}
}

// A deep model of few parameters is refused by its layers' memory too:
// --depth 1e8 at width 1 passed the check and ran out of memory building
// (here 1e6 blocks, about 2.5 GiB built, within a 3 GiB limit).
func TestBuildModelCountsDeepModelsLayers(t *testing.T) {
	c := DefaultConfig()
	c.Model, c.Hidden, c.Depth, c.MemoryLimitMB = "mlp", 1, 1_000_000, 3<<10
	_, err := BuildModel(c, layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Hidden: 1, Depth: 1_000_000})
	if err == nil || !strings.Contains(err.Error(), "and layers") {
		t.Fatalf("mlp of depth 1e6 within 3 GiB: %v, want a refusal", err)
	}
}
