package bench

import (
	"cmp"
	"fmt"
	"math"
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
	// Precision is what the model's products compute in
	// (layers.SetPrecision); FP32 by default.
	Precision engine.Precision
	// World, when it has more than one rank, makes the steps data parallel:
	// Batch is the global batch, each rank steps its own Batch/Size rows and
	// the gradients are all-reduced every step (trainer.GradReducer). Every
	// rank calls TimeSteps with the same configuration.
	World trainer.World
	// BucketBytes is the trainer's (Trainer.BucketBytes): the gradient
	// buckets whose all-reduce starts during the backward pass.
	BucketBytes int
	// Profile, on the GPU, runs a few more steps under the kernel profiler
	// after the timed ones (StepTiming.Profile).
	Profile bool
	// NoCUDAGraph launches a GPU step's kernels one by one instead of as
	// one CUDA graph once the step repeats (engine.StepGraph).
	NoCUDAGraph bool
	// MicroBatch runs each step's forward and backward that many rows at a
	// time (trainer.Classifier.MicroBatch; CPU only, no batch norm); 0 lets
	// trainer.MicroBatchRule choose, -1 runs the batch whole.
	MicroBatch int
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
	CPUISA            string  `json:"cpu_isa"` // the C fast paths' level (engine.CPUISA)
	Precision         string  `json:"precision"`
	MicroBatch        int     `json:"micro_batch,omitempty"` // the micro-batch the steps ran (absent: the whole batch)
	// CPUBF16 is what a CPU's bf16 products ran on: amx, or avx512_bf16
	// (no AMX, or $KILN_CPU_AMX=off).
	CPUBF16 string `json:"cpu_bf16,omitempty"`
	// Data-parallel steps only (the one-process line keeps its fields):
	// the ranks, the share of the timed seconds spent in the gradients'
	// all-reduce (the mean over ranks), and the gradient bytes each
	// all-reduce sums (fp32).
	Ranks                 int     `json:"ranks,omitempty"`
	CommShare             float64 `json:"comm_share,omitempty"`
	AllreduceBytesPerStep int64   `json:"allreduce_bytes_per_step,omitempty"`
	// CUDAGraph says the timed GPU steps ran as CUDA graph launches: all
	// of them replayed one graph (absent otherwise).
	CUDAGraph bool `json:"cuda_graph,omitempty"`
	// Profile is the kernel profile (StepTimingConfig.Profile).
	Profile *KernelProfile `json:"profile,omitempty"`
}

// stepRun is a model ready to step on this rank's synthetic batch.
type stepRun struct {
	step    *trainer.Classifier
	x       *engine.Tensor
	labels  []int32
	losses  *engine.LossLog   // as Fit keeps them: a GPU step waits for nothing
	graph   *engine.StepGraph // as Fit: a GPU step as one graph launch
	read    []engine.StepLoss
	reducer *trainer.GradReducer // nil in one process
	release func()
}

// TimeSteps builds the model, warms up, and times training steps.
func TimeSteps(c StepTimingConfig) (StepTiming, error) {
	if c.Profile && c.Device != engine.CUDA {
		return StepTiming{}, fmt.Errorf("the kernel profile times GPU kernels; on the %v use a CPU profile", c.Device)
	}
	rows, err := rankRows(c.World, c.Batch)
	if err != nil {
		return StepTiming{}, err
	}
	net, err := layers.Build(c.Model, c.Spec)
	if err != nil {
		return StepTiming{}, err
	}
	if c.LR == 0 {
		c.LR = 0.01
	}
	r, err := newStepRun(net, c, rows)
	if err != nil {
		return StepTiming{}, err
	}
	defer r.release()
	var loss float64
	warm := time.Now()
	for i := 0; i < max(c.Warmup, 1); i++ {
		if i == 1 {
			warm = time.Now() // the first step allocates: the rest say what a step costs
		}
		if loss, err = r.steps(1, c.LR); err != nil {
			return StepTiming{}, err
		}
	}
	warmStep := time.Since(warm) / time.Duration(max(c.Warmup-1, 1))
	r.resetComm()
	graphBefore := r.graph.Stats()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	n := 0
	for more := 1; more > 0; {
		if loss, err = r.steps(more, c.LR); err != nil {
			return StepTiming{}, err
		}
		n += more
		if more, err = nextSteps(c, n, time.Since(start), warmStep); err != nil {
			return StepTiming{}, err
		}
	}
	el := time.Since(start).Seconds()
	runtime.ReadMemStats(&after)
	graph := r.graph.Stats()
	s := c.Spec
	res := StepTiming{
		Model: c.Model, Batch: c.Batch, Device: c.Device.String(),
		Input:             fmt.Sprintf("%dx%dx%d", s.Height, s.Width, s.Channels),
		Params:            layers.CountParams(net),
		Threads:           engine.Threads(),
		CPUISA:            engine.CPUISA(),
		Precision:         c.Precision.String(),
		MicroBatch:        r.step.MicroBatchFor(r.x.Dim(0), c.Device),
		Steps:             n,
		Seconds:           el,
		StepMillis:        el / float64(n) * 1e3,
		TrainImagesPerSec: float64(n*c.Batch) / el,
		AllocsPerStep:     float64(after.Mallocs-before.Mallocs) / float64(n),
		FinalLoss:         loss,
		CUDAGraph:         graph.Err == nil && graph.Replays-graphBefore.Replays == n,
	}
	if c.Device == engine.CPU && c.Precision == engine.BF16 {
		res.CPUBF16 = "avx512_bf16"
		if engine.CPUHasAMX() {
			res.CPUBF16 = "amx"
		}
	}
	if c.Profile {
		if res.Profile, err = profileSteps(r, c.LR, profiledSteps); err != nil {
			return StepTiming{}, err
		}
	}
	return res, r.rankFigures(c.World, &res)
}

// steps takes n training steps as Fit takes them, reading the losses back
// when the log is full and after the last step (which waits for the
// device), and returns the last step's loss.
func (r *stepRun) steps(n int, lr float64) (float64, error) {
	if n <= 0 {
		return 0, nil
	}
	for i := range n {
		if err := r.graph.Step(func() error { return r.step.TrainStepLogged(r.x, r.labels, lr, r.losses) }); err != nil {
			return 0, err
		}
		if r.losses.Len() == r.losses.Cap() || i == n-1 {
			var err error
			if r.read, err = r.losses.Read(r.read[:0]); err != nil {
				return 0, err
			}
			for _, l := range r.read {
				if math.IsNaN(l.Loss) || math.IsInf(l.Loss, 0) {
					return l.Loss, fmt.Errorf("loss is %v", l.Loss)
				}
			}
		}
	}
	return r.read[len(r.read)-1].Loss, nil
}

// newStepRun makes this rank's batch of rows (seeded by the rank, so ranks
// step different data), moves everything to the device, and hooks the
// gradients' all-reduce into the step when there are several ranks. The
// ranks' weights start the same without a broadcast: layers.Build is seeded.
func newStepRun(net *layers.Model, c StepTimingConfig, rows int) (*stepRun, error) {
	s := c.Spec
	x := engine.New(engine.Float32, rows, s.Channels, s.Height, s.Width)
	rng := rand.New(rand.NewPCG(1+uint64(rankOf(c.World)), 2))
	for i := range x.Float32() {
		x.Float32()[i] = float32(rng.NormFloat64())
	}
	labels := make([]int32, rows)
	for i := range labels {
		labels[i] = int32(rng.IntN(max(s.Outputs(), 1)))
	}
	var frees []func()
	if c.Device != engine.CPU {
		// Parameters, optimiser state and the batch live on the device; the
		// losses come back every so many steps (stepRun.steps).
		if err := layers.ToDevice(net, c.Device); err != nil {
			return nil, err
		}
		frees = append(frees, func() { layers.Release(net) })
		dx, err := x.To(c.Device)
		if err != nil {
			layers.Release(net)
			return nil, err
		}
		x = dx
		frees = append(frees, dx.Release)
	}
	if err := layers.SetPrecision(net, c.Precision); err != nil {
		for _, f := range frees {
			f()
		}
		return nil, err
	}
	auto, err := trainer.MicroBatchRuleFor(net, c.MicroBatch)
	if err != nil {
		for _, f := range frees {
			f()
		}
		return nil, err
	}
	opt := &trainer.SGD{Momentum: 0.9}
	step := trainer.NewClassifier(net, opt)
	step.MicroBatch, step.AutoMicro = c.MicroBatch, auto
	r := &stepRun{step: step, x: x, labels: labels, losses: engine.NewLossLog(50)}
	graphDev := c.Device
	if c.NoCUDAGraph || sizeOf(c.World) > 1 {
		graphDev = engine.CPU // off: a step's all-reduce would end the graph
	}
	r.graph = engine.NewStepGraph(graphDev)
	if ranks := sizeOf(c.World); ranks > 1 {
		share := 1 / float64(ranks)
		r.reducer = &trainer.GradReducer{World: c.World, BucketBytes: cmp.Or(c.BucketBytes, trainer.DefaultBucketBytes), Share: share}
		if c.Device == engine.CPU {
			r.reducer.Overlap(net, step.Params())
		}
		step.Reduce = func(params []*layers.Param) error { return r.reducer.Reduce(params, share) }
		frees = append(frees, r.reducer.Release)
	}
	frees = append(frees, opt.Release, step.ReleaseBuffers, r.losses.Release, r.graph.Release)
	r.release = func() {
		for i := len(frees) - 1; i >= 0; i-- {
			frees[i]()
		}
	}
	return r, nil
}
