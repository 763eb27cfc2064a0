package trainer

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer/data"
)

// graphRun fits model on the GPU with or without the step graph and
// returns its epoch records, its parameters' bits and the graph's counts.
func graphRun(t *testing.T, c Config, samples int, noGraph bool) ([]MetricsRecord, []float64, engine.GraphStats) {
	t.Helper()
	c.NoCUDAGraph = noGraph
	var tr *Trainer
	if c.Model == "convnet" {
		var err error
		if tr, err = NewTrainer(c, tinyConvNet(c.Seed)); err != nil {
			t.Fatal(err)
		}
	} else {
		tr = newBlobTrainer(t, c, "", false)
	}
	defer tr.Release()
	if err := tr.SetDevice(engine.CUDA); err != nil {
		t.Fatal(err)
	}
	var recs []MetricsRecord
	tr.Callbacks.OnEpochEnd = func(r MetricsRecord) bool { recs = append(recs, r); return false }
	s := &data.Splits{Train: blobs(t, samples, 1), Val: blobs(t, 40, 2)}
	if _, err := tr.Fit(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	var w []float64
	_, ps := layers.Params(tr.Model)
	for _, p := range ps {
		w = append(w, p.Value.Values()...)
	}
	return recs, w, tr.graphStats
}

// Issue 17, item 6: a GPU run's steps go as CUDA graph launches, with the
// same losses and weights, bit for bit, as without; the learning rate
// (cosine), AdamW's bias corrections, dropout's stream and the loss log's
// slot change every step and are given to the graph's nodes.
func TestCUDAStepGraphGivesTheSameRun(t *testing.T) {
	cudaOrSkip(t)
	// Each epoch ends on a short batch, and validation every 5 steps runs
	// other shapes between steps.
	for _, r := range []struct {
		model          string
		samples, batch int
	}{{"mlp", 500, 32}, {"convnet", 180, 16}} {
		t.Run(r.model, func(t *testing.T) {
			c := blobConfig()
			c.Model, c.Epochs, c.Batch, c.Optimizer, c.LR, c.ClipNorm, c.ValEvery = r.model, 2, r.batch, "adamw", 0.003, 0.5, 5
			want, wantW, off := graphRun(t, c, r.samples, true)
			got, gotW, on := graphRun(t, c, r.samples, false)
			if off != (engine.GraphStats{}) {
				t.Errorf("--no-cuda-graph made a graph: %+v", off)
			}
			if len(got) != len(want) {
				t.Fatalf("%d epochs with the graph, %d without", len(got), len(want))
			}
			for i := range want {
				if got[i].Loss != want[i].Loss || *got[i].Accuracy != *want[i].Accuracy {
					t.Errorf("epoch %d: loss %v accuracy %v with the graph, %v %v without", i+1,
						got[i].Loss, *got[i].Accuracy, want[i].Loss, *want[i].Accuracy)
				}
			}
			if !slices.Equal(gotW, wantW) {
				t.Errorf("the weights differ with the graph")
			}
			steps := 2 * ((r.samples + r.batch - 1) / r.batch)
			t.Logf("%s: %+v", r.model, on)
			if on.Err != nil || on.Steps != steps || on.Replays < steps/2 {
				t.Errorf("graph counts %+v: want most of the %d steps replayed", on, steps)
			}
		})
	}
}

// tinyConvNet has the cnn's kinds of layer (convolutions with and without
// bias, one strided, batch norm then ReLU, max pooling, linear then ReLU,
// dropout) at widths the emulator runs in seconds, for 1×8×8 inputs and 4
// classes.
func tinyConvNet(seed uint64) layers.Layer {
	rng := rand.New(rand.NewPCG(seed, 5))
	m := &layers.Sequential{}
	return m.Append("conv1", layers.NewConv2D(rng, 1, 4, 3, layers.ConvOptions{Padding: 1, NoBias: true})).
		Append("bn1", layers.NewBatchNorm2D(4)).
		Append("relu1", layers.NewReLU()).
		Append("pool1", layers.NewMaxPool2D(2, 2, 0)).
		Append("conv2", layers.NewConv2D(rng, 4, 4, 3, layers.ConvOptions{Padding: 1, Stride: 2})).
		Append("relu2", layers.NewReLU()).
		Append("flatten", &layers.Flatten{}).
		Append("fc1", layers.NewLinear(rng, 16, 16, true)).
		Append("relu3", layers.NewReLU()).
		Append("dropout", layers.NewDropout(0.3, seed^7)).
		Append("fc2", layers.NewLinear(rng, 16, 4, true))
}
