package trainer

import (
	"context"
	"testing"

	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer/data"
)

// A loop of one's own over TrainOnBatch, with Fit's loader and schedule,
// ends with Fit's weights to the bit: it is Fit's step, not a look-alike.
func TestTrainOnBatchTakesFitsSteps(t *testing.T) {
	c := blobConfig()
	c.Epochs = 2
	train := blobs(t, 512, 1)
	fitted := newBlobTrainer(t, c, "", false)
	if _, err := fitted.Fit(context.Background(), &data.Splits{Train: train}); err != nil {
		t.Fatal(err)
	}

	own := newBlobTrainer(t, c, "", false)
	if d := own.KeepOnDevice(train); d != nil {
		t.Fatalf("a trainer on the CPU kept the data on a device: %+v", d)
	}
	loader, err := data.NewLoader(train, data.LoaderOptions{BatchSize: c.Batch, Shuffle: true, DropLast: c.DropLast, Seed: c.Seed})
	if err != nil {
		t.Fatal(err)
	}
	defer loader.Close()
	sched, err := NewSchedule(ScheduleConfig{Kind: c.Schedule, BaseLR: c.LR, Total: loader.BatchesPerEpoch() * c.Epochs, Warmup: c.Warmup})
	if err != nil {
		t.Fatal(err)
	}
	step, correct := 0, 0
	for epoch := range c.Epochs {
		for b := range loader.Batches(epoch, 0) {
			_, n, err := own.TrainOnBatch(nil, b, sched.LR(step))
			if err != nil {
				t.Fatalf("step %d: %v", step, err)
			}
			step, correct = step+1, correct+n
		}
	}
	if correct == 0 {
		t.Error("no correct answers counted")
	}
	_, want := layers.Params(fitted.Model)
	_, got := layers.Params(own.Model)
	for i := range want {
		w, g := want[i].Value.Float32(), got[i].Value.Float32()
		for j := range w {
			if w[j] != g[j] {
				t.Fatalf("parameter %d, element %d: Fit %v, TrainOnBatch %v", i, j, w[j], g[j])
			}
		}
	}
}
