package bench

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"time"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer"
)

// StepTimingConfig describes a training-speed measurement on a fixed
// synthetic batch: full steps of forward, loss, backward and SGD with
// momentum (`kiln bench`).
type StepTimingConfig struct {
	Model  string
	Spec   layers.Spec
	Batch  int
	Warmup int           // steps not timed
	Steps  int           // timed steps (at least this many)
	MinDur time.Duration // and at least this long
	LR     float64
	Device engine.Device // CPU by default; CUDA must be open (engine.OpenDevice)
}

// StepTiming is what one training-speed measurement found.
type StepTiming struct {
	Model             string  `json:"model"`
	Batch             int     `json:"batch"`
	Device            string  `json:"device"`
	Input             string  `json:"input"`
	Params            int     `json:"params"`
	Threads           int     `json:"threads"`
	Steps             int     `json:"steps"`
	Seconds           float64 `json:"seconds"`
	StepMillis        float64 `json:"step_ms"`
	TrainImagesPerSec float64 `json:"train_images_per_sec"`
	AllocsPerStep     float64 `json:"allocs_per_step"`
	FinalLoss         float64 `json:"final_loss"`
}

// TimeSteps builds the model, warms up, and times training steps.
func TimeSteps(c StepTimingConfig) (StepTiming, error) {
	if c.Batch < 1 {
		return StepTiming{}, fmt.Errorf("bench: batch must be positive, got %d", c.Batch)
	}
	net, err := layers.Build(c.Model, c.Spec)
	if err != nil {
		return StepTiming{}, err
	}
	s := c.Spec
	x := engine.New(engine.Float32, c.Batch, s.Channels, s.Height, s.Width)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range x.Float32() {
		x.Float32()[i] = float32(rng.NormFloat64())
	}
	labels := make([]int32, c.Batch)
	for i := range labels {
		labels[i] = int32(rng.IntN(max(s.Outputs(), 1)))
	}
	if c.LR == 0 {
		c.LR = 0.01
	}
	if c.Device != engine.CPU {
		// Parameters, optimiser state and the batch live on the device; each
		// step brings back only the loss (which also waits for the step).
		if err := layers.ToDevice(net, c.Device); err != nil {
			return StepTiming{}, err
		}
		defer layers.Release(net)
		if x, err = x.To(c.Device); err != nil {
			return StepTiming{}, err
		}
		defer x.Release()
	}
	opt := &trainer.SGD{Momentum: 0.9}
	step := trainer.NewClassifier(net, opt)
	defer opt.Release()
	defer step.ReleaseBuffers()
	var loss float64
	for i := 0; i < max(c.Warmup, 1); i++ {
		if loss, _, err = step.TrainStep(x, labels, c.LR); err != nil {
			return StepTiming{}, err
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	n := 0
	for n < c.Steps || time.Since(start) < c.MinDur {
		if loss, _, err = step.TrainStep(x, labels, c.LR); err != nil {
			return StepTiming{}, err
		}
		n++
	}
	el := time.Since(start).Seconds()
	runtime.ReadMemStats(&after)
	return StepTiming{
		Model: c.Model, Batch: c.Batch, Device: c.Device.String(),
		Input:             fmt.Sprintf("%dx%dx%d", s.Height, s.Width, s.Channels),
		Params:            layers.CountParams(net),
		Threads:           engine.Threads(),
		Steps:             n,
		Seconds:           el,
		StepMillis:        el / float64(n) * 1e3,
		TrainImagesPerSec: float64(n*c.Batch) / el,
		AllocsPerStep:     float64(after.Mallocs-before.Mallocs) / float64(n),
		FinalLoss:         loss,
	}, nil
}
