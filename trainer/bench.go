package trainer

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer/data"
)

// BenchConfig describes a training-speed measurement on a fixed synthetic
// batch: full steps of forward, loss, backward and SGD with momentum.
type BenchConfig struct {
	Model  string
	Spec   layers.Spec
	Batch  int
	Warmup int           // steps not timed
	Steps  int           // timed steps (at least this many)
	MinDur time.Duration // and at least this long
	LR     float64
	Device engine.Device // CPU by default; CUDA must be open (engine.OpenDevice)
}

// BenchResult is what one measurement found.
type BenchResult struct {
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

// Bench builds the model, warms up, and times training steps.
func Bench(c BenchConfig) (BenchResult, error) {
	if c.Batch < 1 {
		return BenchResult{}, fmt.Errorf("bench: batch must be positive, got %d", c.Batch)
	}
	net, err := layers.Build(c.Model, c.Spec)
	if err != nil {
		return BenchResult{}, err
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
			return BenchResult{}, err
		}
		if x, err = x.To(c.Device); err != nil {
			return BenchResult{}, err
		}
	}
	step := NewClassifier(net, &SGD{Momentum: 0.9})
	var loss float64
	for i := 0; i < max(c.Warmup, 1); i++ {
		if loss, _, err = step.TrainStep(x, labels, c.LR); err != nil {
			return BenchResult{}, err
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	n := 0
	for n < c.Steps || time.Since(start) < c.MinDur {
		if loss, _, err = step.TrainStep(x, labels, c.LR); err != nil {
			return BenchResult{}, err
		}
		n++
	}
	el := time.Since(start).Seconds()
	runtime.ReadMemStats(&after)
	return BenchResult{
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

// MemoryStats is a process's memory as the benchmarks report it: the
// resident-set high-water mark (what the operating system had to provide at
// the worst moment, C allocations included) and the Go runtime's own figures.
type MemoryStats struct {
	RSSPeakBytes  int64 `json:"rss_peak_bytes"`    // VmHWM from /proc/self/status (0 when unknown)
	GoSysBytes    int64 `json:"go_sys_bytes"`      // memory the Go runtime obtained from the OS
	GoHeapBytes   int64 `json:"go_heap_bytes"`     // live heap objects now
	GoHeapSysPeak int64 `json:"go_heap_sys_bytes"` // heap spans obtained (the heap's high-water)
	// GPUPeakBytes is the most device memory Kiln's allocator had handed out
	// at once (cached free blocks not counted, as PyTorch's
	// max_memory_allocated); 0 when no GPU was used.
	GPUPeakBytes int64 `json:"gpu_peak_bytes,omitempty"`
}

// ProcessMemory reads this process's memory figures.
func ProcessMemory() MemoryStats {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return MemoryStats{
		RSSPeakBytes: procStatusBytes("VmHWM:"),
		GoSysBytes:   int64(ms.Sys), GoHeapBytes: int64(ms.HeapAlloc), GoHeapSysPeak: int64(ms.HeapSys),
		GPUPeakBytes: cuda.Memory().Peak,
	}
}

// procStatusBytes reads a "Key: N kB" line of /proc/self/status.
func procStatusBytes(key string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == key {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

// TTAConfig describes a time-to-accuracy run: train with Config's recipe
// (model, optimiser, schedule planned over Config.Epochs, batch, seed) and
// check the test accuracy after every epoch, stopping at Target.
type TTAConfig struct {
	Config      Config
	Train, Test *data.Dataset
	Target      float64 // test accuracy to reach, in (0, 1]
	// LossEvery records the mean training loss every this many steps (0:
	// about 20 points per epoch).
	LossEvery int
	// MaxSeconds caps the training time: past it the run stops mid-epoch,
	// checks the test set once more and reports Capped (0: no cap).
	MaxSeconds float64
	// OnEpoch, when set, sees each epoch's test check as it happens.
	OnEpoch func(TTAEpoch)
	// Device is where the model trains (zero: the CPU, or the default that
	// SetDefaultDevice set). On the GPU the training set is kept in device
	// memory when it fits, as in Fit.
	Device engine.Device
}

// TTAPoint is one point of the training-loss curve: the mean loss of the
// steps since the previous point, at this much training time.
type TTAPoint struct {
	Step    int     `json:"step"`
	Seconds float64 `json:"seconds"`
	Loss    float64 `json:"loss"`
}

// TTAEpoch is the test check after one epoch.
type TTAEpoch struct {
	Epoch        int     `json:"epoch"`
	Seconds      float64 `json:"seconds"` // training time so far (checks excluded)
	TrainLoss    float64 `json:"train_loss"`
	TestAccuracy float64 `json:"test_accuracy"`
	TestLoss     float64 `json:"test_loss"`
}

// TTAResult is what a time-to-accuracy run found.
type TTAResult struct {
	Params       int        `json:"params"`
	Reached      bool       `json:"reached"`
	Capped       bool       `json:"capped,omitempty"` // stopped at MaxSeconds
	Epochs       int        `json:"epochs"`           // epochs run (the one that reached Target, if any; a capped one counts)
	Seconds      float64    `json:"seconds"`          // training time, test checks and data loading excluded
	CheckSeconds float64    `json:"check_seconds"`
	Steps        int        `json:"steps"`
	ImagesPerSec float64    `json:"images_per_sec"`
	BestAccuracy float64    `json:"best_accuracy"`
	PerEpoch     []TTAEpoch `json:"per_epoch"`
	Curve        []TTAPoint `json:"curve"`
}

// TimeToAccuracy trains a fresh model of c.Config.Model on c.Train with the
// recipe in c.Config, exactly as Fit's training loop does (same loader,
// schedule, optimiser and seed), and evaluates c.Test after each epoch. The
// clock stops during the checks. Classification only.
func TimeToAccuracy(ctx context.Context, c TTAConfig) (*TTAResult, error) {
	cfg := c.Config
	switch {
	case c.Train == nil || c.Train.Len() == 0 || c.Test == nil || c.Test.Len() == 0:
		return nil, fmt.Errorf("time to accuracy: need training and test data")
	case c.Train.Task != data.Classification || cfg.Regression:
		return nil, fmt.Errorf("time to accuracy: %s is not a classification data set", c.Train.Name)
	case !(c.Target > 0 && c.Target <= 1):
		return nil, fmt.Errorf("time to accuracy: target %v is not an accuracy in (0, 1]", c.Target)
	}
	if err := cfg.ValidateTraining(); err != nil {
		return nil, err
	}
	spec := layers.Spec{Channels: c.Train.Channels, Height: c.Train.Height, Width: c.Train.Width,
		Classes: c.Train.NumClasses(), Hidden: cfg.Hidden, Depth: cfg.Depth, Seed: cfg.Seed}
	model, err := layers.Build(cfg.Model, spec)
	if err != nil {
		return nil, err
	}
	t, err := NewTrainer(cfg, model)
	if err != nil {
		return nil, err
	}
	if c.Device != engine.CPU {
		if err := t.SetDevice(c.Device); err != nil {
			return nil, fmt.Errorf("time to accuracy: %w", err)
		}
	}
	gdata := t.dataOnDevice(c.Train)
	loader, err := data.NewLoader(c.Train, data.LoaderOptions{BatchSize: cfg.Batch, Shuffle: true,
		DropLast: cfg.DropLast, Augment: cfg.Augment, Seed: cfg.Seed})
	if err != nil {
		return nil, err
	}
	defer loader.Close()
	nb := loader.BatchesPerEpoch()
	if nb == 0 {
		return nil, fmt.Errorf("time to accuracy: %d samples make no batch of %d", c.Train.Len(), cfg.Batch)
	}
	sched, err := NewSchedule(ScheduleConfig{Kind: cfg.Schedule, BaseLR: cfg.LR, Total: nb * cfg.Epochs,
		Warmup: cfg.Warmup, StepSize: cfg.StepSize, Milestones: cfg.Milestones, Gamma: cfg.Gamma})
	if err != nil {
		return nil, err
	}
	every := c.LossEvery
	if every <= 0 {
		every = max(1, nb/20)
	}
	res := &TTAResult{Params: layers.CountParams(model)}
	model.SetTraining(true)
	step, images, wall, lossSum, lossN := 0, 0, 0.0, 0.0, 0
	for epoch := 0; epoch < cfg.Epochs && !res.Reached && !res.Capped; epoch++ {
		epochLoss, epochN := 0.0, 0
		start := time.Now()
		for b := range loader.Batches(epoch, 0) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if c.MaxSeconds > 0 && wall+time.Since(start).Seconds() >= c.MaxSeconds {
				res.Capped = true
				break
			}
			x, err := t.batchOnDevice(gdata, b)
			if err != nil {
				return nil, fmt.Errorf("time to accuracy: epoch %d, step %d: %w", epoch+1, step, err)
			}
			loss, _, err := t.classifier.TrainStep(x, b.Labels, sched.LR(step))
			if err != nil {
				return nil, fmt.Errorf("time to accuracy: epoch %d, step %d: %w", epoch+1, step, err)
			}
			step, images = step+1, images+b.Size()
			lossSum, lossN = lossSum+loss, lossN+1
			epochLoss, epochN = epochLoss+loss*float64(b.Size()), epochN+b.Size()
			if step%every == 0 {
				res.Curve = append(res.Curve, TTAPoint{Step: step, Seconds: wall + time.Since(start).Seconds(), Loss: lossSum / float64(lossN)})
				lossSum, lossN = 0, 0
			}
		}
		wall += time.Since(start).Seconds()
		check := time.Now()
		r, err := t.Evaluate(c.Test)
		if err != nil {
			return nil, err
		}
		res.CheckSeconds += time.Since(check).Seconds()
		e := TTAEpoch{Epoch: epoch + 1, Seconds: wall, TrainLoss: epochLoss / float64(max(epochN, 1)),
			TestAccuracy: r.Accuracy, TestLoss: r.Loss}
		res.PerEpoch = append(res.PerEpoch, e)
		res.BestAccuracy = max(res.BestAccuracy, r.Accuracy)
		res.Reached = r.Accuracy >= c.Target
		if c.OnEpoch != nil {
			c.OnEpoch(e)
		}
	}
	res.Epochs, res.Seconds, res.Steps = len(res.PerEpoch), wall, step
	res.ImagesPerSec = float64(images) / max(wall, 1e-9)
	return res, nil
}
