package bench

import "testing"

// On the GPU the training table says whether Kiln's steps ran as CUDA
// graphs, and sets PyTorch's step captured as a graph (torch.cuda.graph)
// beside its eager figure, with Kiln's ratio to it; a capture that failed
// is a footnote.
func TestGPUTrainingTableHasTheGraphColumns(t *testing.T) {
	k, te, tg := NewSample([]float64{300000}), NewSample([]float64{200000}), NewSample([]float64{250000})
	rep := &Report{Train: []TrainResult{
		{Model: "lenet", Input: "28x28x1", Batch: 64, Precision: "fp32", Kiln: &k, Torch: &te, TorchGraph: &tg,
			Ratio: SpeedRatio(k, te), RatioGraph: SpeedRatio(k, tg), KilnCUDAGraph: true},
		{Model: "cnn", Input: "32x32x3", Batch: 128, Precision: "fp32", Kiln: &k, Torch: &te,
			TorchGraphError: "RuntimeError: capture failed"},
	}}
	rep.Settings.Device, rep.Settings.Torch = "cuda", true
	reportHas(t, rep,
		"| Kiln graph | PyTorch graph img/s | Kiln/PyTorch graph |",
		"| yes | 250000 | **1.20×** (1.20–1.20) |",
		"| no | n/a¹ | — |",
		"PyTorch graph cnn 32x32x3: RuntimeError: capture failed")
}

// A Kiln figure that ran in micro-batches (Kiln's default for gMLP at
// batch 128) says so, and the table's text says what that means.
func TestTrainingTableMarksMicroBatches(t *testing.T) {
	k, te := NewSample([]float64{2500}), NewSample([]float64{900})
	rep := &Report{Train: []TrainResult{
		{Model: "gmlp", Input: "32x32x3", Batch: 128, Precision: "fp32", Kiln: &k, Torch: &te, Ratio: SpeedRatio(k, te),
			KilnMicroBatch: 32},
		{Model: "lenet", Input: "28x28x1", Batch: 64, Precision: "fp32", Kiln: &k, Torch: &te, Ratio: SpeedRatio(k, te)},
	}}
	rep.Settings.Device, rep.Settings.Torch = "cpu", true
	reportHas(t, rep, "| 2500 (mb 32) |", "| 2500 | 900 |", "A Kiln figure marked (mb N) ran each step's forward and backward N samples at a time")
}
