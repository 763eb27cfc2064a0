package trainer

import (
	"context"
	"math"
	"regexp"
	"strconv"
	"testing"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/trainer/data"
)

// fitEpochs fits the blob model on device d and returns each epoch's
// training record and the kernel profile of the whole run.
func fitEpochs(t *testing.T, c Config, d engine.Device) ([]MetricsRecord, cuda.Profile, error) {
	t.Helper()
	tr := newBlobTrainer(t, c, "", false)
	defer tr.Release()
	if err := tr.SetDevice(d); err != nil {
		t.Fatal(err)
	}
	var recs []MetricsRecord
	tr.Callbacks.OnEpochEnd = func(r MetricsRecord) bool { recs = append(recs, r); return false }
	if d == engine.CUDA {
		if err := cuda.StartProfile(); err != nil {
			t.Fatal(err)
		}
	}
	_, err := tr.Fit(context.Background(), &data.Splits{Train: blobs(t, 512, 1)})
	var p cuda.Profile
	if d == engine.CUDA {
		var perr error
		if p, perr = cuda.StopProfile(); perr != nil {
			t.Fatal(perr)
		}
	}
	return recs, p, err
}

// Issue 17, item 4: Fit on the GPU, gradient clipping included, reads its
// steps' losses back in one copy per read, not one per step, and its
// training figures are the CPU's.
func TestCUDAFitReadsTheLossesInBatches(t *testing.T) {
	cudaOrSkip(t)
	c := blobConfig()
	c.Epochs = 2     // 16 steps an epoch: one read at each epoch's end
	c.ClipNorm = 0.5 // clipping too is done on the device
	cpu, _, err := fitEpochs(t, c, engine.CPU)
	if err != nil {
		t.Fatal(err)
	}
	gpu, p, err := fitEpochs(t, c, engine.CUDA)
	if err != nil {
		t.Fatal(err)
	}
	if len(gpu) != 2 || len(cpu) != 2 {
		t.Fatalf("%d epoch records on the GPU, %d on the CPU", len(gpu), len(cpu))
	}
	for i := range cpu {
		if math.Abs(gpu[i].Loss-cpu[i].Loss) > 1e-4 || *gpu[i].Accuracy != *cpu[i].Accuracy {
			t.Errorf("epoch %d: GPU loss %v accuracy %v, CPU %v %v", i+1, gpu[i].Loss, *gpu[i].Accuracy, cpu[i].Loss, *cpu[i].Accuracy)
		}
	}
	if p.Copies > 2 {
		t.Errorf("32 steps copied to the host %d times, want one read an epoch", p.Copies)
	}
	t.Logf("32 steps: %d launches, %d copies to the host, %d uploads", p.Launches, p.Copies, p.Uploads)

	c.LogEvery = 4
	_, p, err = fitEpochs(t, c, engine.CUDA)
	if err != nil {
		t.Fatal(err)
	}
	if p.Copies != 8 {
		t.Errorf("--log-every 4 over 32 steps: %d copies to the host, want a read per record, 8", p.Copies)
	}
}

// A NaN loss on the GPU stops the run at the next read, and the error
// names the step it happened at and the step that read it.
func TestCUDANaNLossIsNamedAtItsStep(t *testing.T) {
	cudaOrSkip(t)
	c := blobConfig()
	c.LR = 1e30
	_, _, err := fitEpochs(t, c, engine.CUDA)
	if err == nil {
		t.Fatal("a diverging run on the GPU ended without an error")
	}
	m := regexp.MustCompile(`epoch 1, step (\d+): loss is NaN \(found (\d+) steps later: a GPU run reads its losses every 50 steps\)`).
		FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("the error: %v", err)
	}
	t.Log(err)
	s, _ := strconv.Atoi(m[1])
	later, _ := strconv.Atoi(m[2])
	if s >= 15 || s+later != 16 {
		t.Errorf("the NaN is put at step %d, found %d steps later; with lr 1e30 it comes in the first steps, read at the epoch's 16th: %v", s, later, err)
	}
}
