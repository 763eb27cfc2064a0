package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/kiln-ml/kiln/bench"
	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/mpi"
	"github.com/kiln-ml/kiln/trainer"
)

func benchCmd() *cobra.Command {
	var o benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Time full training steps of a model on a fixed synthetic batch",
		Long: `Times training steps (forward, softmax cross-entropy, backward and an SGD
update with momentum 0.9) on a fixed synthetic batch of the model's input shape.
With --json the last line of standard output is one flat JSON object.

Under mpirun (kiln built with MPI: make build MPI=1) the steps are data
parallel: --batch is the global batch, each rank steps its share of it on
its own synthetic rows, and the gradients are all-reduced every step. Rank 0
prints, adding the ranks, the all-reduce's share of the time (comm_share)
and the bytes it sums a step.

With --profile on the GPU, ten more steps after the timed ones run under
the kernel profiler: per kernel, its launches a step, its device time
(CUDA events around each launch) and its share of the step, then the host
time between launches and the copies, uploads and memsets a step. (The JSON
line then holds it as the object "profile".)

kiln bench suite runs the whole benchmark suite against PyTorch (make bench).`,
		Args: noArgs("the model is --model (kiln bench suite: the whole suite)"),
		RunE: func(cmd *cobra.Command, _ []string) error { return nameSetting(runBench(o), cmd.Flags(), "") },
	}
	f := cmd.Flags()
	f.StringVar(&o.model, "model", "lenet", "model: "+strings.Join(layers.ModelNames(), ", "))
	f.StringVar(&o.input, "input", "28x28x1", "input shape HxWxC, e.g. 28x28x1 or 32x32x3")
	f.StringVar(&o.device, "device", "cpu", "cpu, cuda or auto")
	f.StringVar(&o.precision, "precision", "fp32", "what the products multiply in: fp32, tf32 (GPU) or bf16")
	f.IntVar(&o.batch, "batch", 64, "batch size")
	f.IntVar(&o.microBatch, "micro-batch", 0, "run forward and backward N samples at a time, one update per batch (CPU; 0: Kiln's choice; -1: the whole batch)")
	f.IntVar(&o.classes, "classes", 10, "number of classes")
	f.IntVar(&o.steps, "steps", 20, "timed steps (at least)")
	f.IntVar(&o.warmup, "warmup", 3, "untimed warm-up steps")
	f.Float64Var(&o.seconds, "seconds", 2, "time for at least this long")
	f.IntVar(&o.threads, "threads", 0, "CPU threads (0: all cores)")
	f.BoolVar(&o.asJSON, "json", false, "print one JSON object as the last line")
	f.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile (go tool pprof) to this file")
	f.BoolVar(&o.kernelProfile, "profile", false, "on the GPU: profile the kernels of ten more steps (device time per kernel)")
	f.BoolVar(&o.noCUDAGraph, "no-cuda-graph", false, "on the GPU: launch each step's kernels one by one, not as one CUDA graph")
	f.BoolVar(&o.memStats, "memstats", false, "with --json, add the process's peak memory (for kiln bench suite)")
	_ = f.MarkHidden("memstats")
	cmd.AddCommand(benchSuiteCmd())
	return cmd
}

// benchFlags are kiln bench's flags.
type benchFlags struct {
	model, input, device string
	precision            string
	batch, steps, warmup int
	microBatch           int
	threads, classes     int
	seconds              float64
	asJSON, memStats     bool
	kernelProfile        bool
	noCUDAGraph          bool
	cpuProfile           string
}

// runBench times the steps in this process, or in this rank of a world.
func runBench(o benchFlags) (err error) {
	spec, err := parseInput(o.input)
	if err != nil {
		return usageError{err}
	}
	spec.Classes = o.classes
	if !slices.Contains(layers.ModelNames(), strings.ToLower(o.model)) {
		return usagef("--model %q: unknown (have %s)", o.model, strings.Join(layers.ModelNames(), ", "))
	}
	if o.classes < 1 {
		return usagef("--classes %d: must be at least 1", o.classes)
	}
	dev, err := resolveDevice(o.device, zerolog.Nop())
	if err != nil {
		return err
	}
	prec, err := parsePrecision(o.precision, dev)
	if err != nil {
		return usageError{err}
	}
	if !(o.seconds >= 0 && o.seconds <= 86400) { // NaN, ∞ and 1e300 overflowed the duration: two steps and done
		return usagef("--seconds %v: must be in [0, 86400]", o.seconds)
	}
	if o.batch < 1 || o.steps < 0 || o.warmup < 0 || o.microBatch < -1 {
		return usageError{fmt.Errorf("--batch must be positive, --steps and --warmup not negative and --micro-batch at least -1")}
	}
	if o.threads < 0 || o.threads > trainer.MaxThreads {
		return usagef("--threads %d: must be in [0, %d] (0: all cores)", o.threads, trainer.MaxThreads)
	}
	if err := checkBenchRanks(o.batch, dev); err != nil {
		return err
	}
	if o.kernelProfile && dev != engine.CUDA {
		return usageError{fmt.Errorf("--profile times GPU kernels and needs --device cuda (on the CPU use --cpuprofile)")}
	}
	world, err := joinWorld()
	if err != nil {
		return err
	}
	if world != nil {
		defer func() { abortOnPanic(world, recover()); err = endWorld(world, err) }()
	}
	setBenchThreads(o.threads, world)
	rank0 := world == nil || world.Rank() == 0 // prints and profiles
	if o.cpuProfile != "" && rank0 {
		stop, perr := startProfile(o.cpuProfile)
		if perr != nil {
			return perr
		}
		// err is runBench's result: a profile that did not reach the disk fails the command.
		defer func() {
			if cerr := stop(); err == nil {
				err = cerr
			}
		}()
	}
	buckets, err := bucketBytes()
	if err != nil {
		return err
	}
	if world != nil {
		if err := trainer.AgreeSettings(benchWorld(world), map[string]any{"model": o.model, "input": spec, "batch": o.batch,
			"warmup": o.warmup, "steps": o.steps, "seconds": o.seconds, "device": dev.String(), "precision": prec.String(),
			"micro_batch": o.microBatch, "bucket_bytes": buckets, "no_cuda_graph": o.noCUDAGraph}); err != nil {
			return err
		}
	}
	res, err := bench.TimeSteps(bench.StepTimingConfig{
		Model: o.model, Spec: spec, Batch: o.batch, Warmup: o.warmup, Steps: o.steps,
		MinDur: time.Duration(o.seconds * float64(time.Second)), Device: dev, World: benchWorld(world), BucketBytes: buckets,
		Precision: prec, Profile: o.kernelProfile, NoCUDAGraph: o.noCUDAGraph, MicroBatch: o.microBatch,
	})
	if err != nil || !rank0 {
		return err
	}
	return printStepTiming(res, o.asJSON, o.memStats)
}

// startProfile starts a CPU profile into path; stop ends it, failing when
// the profile did not reach the disk. Ctrl-C, SIGTERM, SIGHUP or a closed
// output pipe end the profile (what it holds so far) before the process
// ends: they left an empty file.
func startProfile(path string) (stop func() error, err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, append(stopSignals, syscall.SIGPIPE)...)
	done := make(chan struct{})
	var once sync.Once
	var closeErr error
	stop = func() error {
		once.Do(func() {
			signal.Stop(sigs)
			close(done)
			pprof.StopCPUProfile()
			closeErr = f.Close()
		})
		return closeErr
	}
	go func() {
		select {
		case s := <-sigs:
			if err := stop(); err == nil {
				fmt.Fprintf(os.Stderr, "kiln: %v: the CPU profile until then is in %s\n", s, path)
			}
			os.Exit(signalStatus(s))
		case <-done:
		}
	}()
	return stop, nil
}

// checkBenchRanks refuses, before any rank joins the world, what kiln bench
// cannot time under mpirun: a global batch the ranks cannot share evenly,
// and GPUs (the ranks would share one).
func checkBenchRanks(batch int, dev engine.Device) error {
	l, ok := mpi.Launched()
	if !ok || l.Size <= 1 {
		return nil
	}
	if batch%l.Size != 0 {
		return usageError{fmt.Errorf("--batch %d is the global batch and does not divide among the %d ranks: use a multiple of %d", batch, l.Size, l.Size)}
	}
	if dev != engine.CPU {
		return usageError{fmt.Errorf("kiln bench under mpirun times CPU ranks; --device %v is not supported there yet", dev)}
	}
	return nil
}

// setBenchThreads sets the engine's threads: --threads, or by default the
// cores divided among the ranks on this machine (as kiln train does).
func setBenchThreads(threads int, w *mpi.World) {
	switch {
	case threads > 0:
		engine.SetThreads(threads)
	case w != nil:
		engine.SetThreads(max(1, runtime.NumCPU()/w.LocalSize()))
	}
}

// benchWorld is w for the step timing: nil (one process) when there is no
// world, not a nil pointer in an interface.
func benchWorld(w *mpi.World) trainer.World {
	if w == nil {
		return nil
	}
	return mpiWorld{w}
}

// printStepTiming prints res: as text, as one JSON line (--json), or as
// the suite's line with the process's memory (--json --memstats, read after
// the timed steps; bench.Run parses it).
func printStepTiming(res bench.StepTiming, asJSON, memStats bool) error {
	if !asJSON {
		micro := ""
		if res.MicroBatch > 0 {
			micro = fmt.Sprintf("  micro-batch %d", res.MicroBatch)
		}
		outf("%s  input %s  batch %d  params %d  threads %d  precision %s%s%s\n", res.Model, res.Input, res.Batch,
			res.Params, res.Threads, res.Precision, micro, map[bool]string{true: "  cuda graph"}[res.CUDAGraph])
		outf("%d steps in %.2fs: %.2f ms/step, %.0f images/s, %.1f allocations/step\n",
			res.Steps, res.Seconds, res.StepMillis, res.TrainImagesPerSec, res.AllocsPerStep)
		if res.Ranks > 1 {
			outf("%d ranks: the all-reduce %.1f%% of the time, %d bytes summed a step\n",
				res.Ranks, 100*res.CommShare, res.AllreduceBytesPerStep)
		}
		if res.Profile != nil {
			printKernelProfile(stdout, res.Profile)
		}
		return nil
	}
	var line any = res
	if memStats {
		line = struct {
			bench.StepTiming
			bench.MemoryStats
		}{res, bench.ProcessMemory()}
	}
	b, err := json.Marshal(line)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	fmt.Fprintln(stdout, string(b))
	return nil
}

// parseInput reads HxWxC.
func parseInput(s string) (layers.Spec, error) {
	parts := strings.Split(strings.ToLower(s), "x")
	if len(parts) != 3 {
		return layers.Spec{}, fmt.Errorf("--input %q: want HxWxC, e.g. 28x28x1", s)
	}
	var v [3]int
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return layers.Spec{}, fmt.Errorf("--input %q: %q is not a positive size", s, p)
		}
		v[i] = n
	}
	return layers.Spec{Height: v[0], Width: v[1], Channels: v[2]}, nil
}

// printKernelProfile prints kiln bench --profile's table.
func printKernelProfile(w io.Writer, p *bench.KernelProfile) {
	fmt.Fprintf(w, "\nkernel profile, %d steps after the timed ones (the events add a little): %.3f ms/step, "+
		"kernels %.3f ms (%.0f%%), host between launches %.3f ms\n", p.Steps, p.StepMillis, p.KernelMillis,
		100*p.KernelMillis/p.StepMillis, p.HostGapMillis)
	fmt.Fprintf(w, "a step: %.1f launches, %.1f copies to the host, %.1f uploads, %.1f memsets\n\n",
		p.LaunchesPerStep, p.CopiesPerStep, p.UploadsPerStep, p.MemsetsPerStep)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "launches/step\tms/step\tmean µs\tof step\t  kernel")
	for _, k := range p.Kernels {
		fmt.Fprintf(tw, "%.1f\t%.3f\t%.1f\t%.1f%%\t  %s\n", k.LaunchesPerStep, k.Millis, k.MeanMicros, 100*k.Share, k.Name)
	}
	tw.Flush()
}
