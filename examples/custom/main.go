// Command custom trains a conv net assembled from layers (not from the zoo) on
// a fifth of real MNIST with the trainer's Go API: go run ./examples/custom
package main

import (
	"context"
	"fmt"
	"log"
	"math/rand/v2"

	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

func main() {
	splits := must(data.Load("mnist", data.Options{Subset: 0.2, ValFraction: 0.1, Seed: 1}))
	rng := rand.New(rand.NewPCG(1, 2))
	model := (&layers.Sequential{}).
		Append("conv1", layers.NewConv2D(rng, 1, 16, 3, layers.ConvOptions{Padding: 1})).
		Append("relu1", layers.NewReLU()).
		Append("pool1", layers.NewMaxPool2D(2, 2, 0)). // 16×14×14
		Append("conv2", layers.NewConv2D(rng, 16, 32, 3, layers.ConvOptions{Padding: 1})).
		Append("relu2", layers.NewReLU()).
		Append("pool2", layers.NewMaxPool2D(2, 2, 0)). // 32×7×7
		Append("flatten", &layers.Flatten{}).
		Append("fc", layers.NewLinear(rng, 32*7*7, splits.Train.NumClasses(), true))
	cfg := trainer.DefaultConfig()      // SGD, Nesterov momentum 0.9, one-cycle schedule
	cfg.Model, cfg.Epochs = "custom", 2 // the name is for logs and the summary
	tr := must(trainer.NewTrainer(cfg, model))
	tr.Callbacks.OnEpochEnd = func(r trainer.MetricsRecord) bool {
		fmt.Printf("epoch %.0f training:   loss %.4f, accuracy %.2f%%\n", r.Epoch, r.Loss, 100**r.Accuracy)
		return false
	}
	tr.Callbacks.OnValidation = func(r trainer.MetricsRecord) bool {
		// Validation ends before the epoch's callback, as in Lightning.
		fmt.Printf("epoch %.0f validation: loss %.4f, accuracy %.2f%%\n", r.Epoch, r.Loss, 100**r.Accuracy)
		return *r.Accuracy >= 0.995 // true stops the run early
	}
	sum := must(tr.Fit(context.Background(), splits))
	fmt.Printf("test accuracy %.2f%% after %d epochs, %.0f images/s\n", 100**sum.TestAccuracy, sum.EpochsRun, sum.TrainImagesPerSec)
}

func must[T any](v T, err error) T {
	if err != nil {
		log.Fatal(err)
	}
	return v
}
