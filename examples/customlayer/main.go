// Command customlayer trains a small conv net with a layer of its own
// (ChannelScale, in layer.go) on a tenth of real MNIST with the trainer's Go
// API, then prints the gains the layer learned: go run ./examples/customlayer
package main

import (
	"context"
	"fmt"
	"log"
	"math/rand/v2"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

func main() {
	splits := must(data.Load("mnist", data.Options{Subset: 0.1, ValFraction: 0.1, Seed: 1}))
	scale := NewChannelScale(engine.Float32, 8)
	model := net(scale, splits.Train.NumClasses())
	cfg := trainer.DefaultConfig()
	cfg.Model, cfg.Epochs, cfg.Device = "customlayer", 1, "cpu" // ChannelScale has no CUDA path
	tr := must(trainer.NewTrainer(cfg, model))
	sum := must(tr.Fit(context.Background(), splits))
	fmt.Printf("test accuracy %.2f%% after %d epoch\n", 100**sum.TestAccuracy, sum.EpochsRun)
	fmt.Printf("learned channel gains: %.3f\n", scale.Gamma.Value.Values())
}

// net is conv → ChannelScale → ReLU → pool → linear: the custom layer sits
// among Kiln's own as any other.
func net(scale *ChannelScale, classes int) layers.Layer {
	rng := rand.New(rand.NewPCG(1, 2))
	return (&layers.Sequential{}).
		Append("conv", layers.NewConv2D(rng, 1, 8, 3, layers.ConvOptions{Padding: 1})).
		Append("scale", scale).
		Append("relu", layers.NewReLU()).
		Append("pool", layers.NewMaxPool2D(2, 2, 0)). // 8×14×14
		Append("flatten", &layers.Flatten{}).
		Append("fc", layers.NewLinear(rng, 8*14*14, classes, true))
}

func must[T any](v T, err error) T {
	if err != nil {
		log.Fatal(err)
	}
	return v
}
