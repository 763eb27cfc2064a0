package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/kiln-ml/kiln/bench"
	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

func benchCmd() *cobra.Command {
	var (
		model, input, device string
		batch, steps, warmup int
		threads, classes     int
		seconds              float64
		asJSON, memStats     bool
		cpuProfile           string
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Time full training steps of a model on a fixed synthetic batch",
		Long: `Times training steps (forward, softmax cross-entropy, backward and an SGD
update with momentum 0.9) on a fixed synthetic batch of the model's input shape.
With --json the last line of standard output is one flat JSON object.

kiln bench suite runs the whole benchmark suite against PyTorch (make bench).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			spec, err := parseInput(input)
			if err != nil {
				return usageError{err}
			}
			spec.Classes = classes
			dev, err := resolveDevice(device, zerolog.Nop())
			if err != nil {
				return err
			}
			if batch < 1 || steps < 0 || warmup < 0 || seconds < 0 {
				return usageError{fmt.Errorf("--batch must be positive and --steps, --warmup, --seconds not negative")}
			}
			if threads > 0 {
				engine.SetThreads(threads)
			}
			if cpuProfile != "" {
				f, cerr := os.Create(cpuProfile)
				if cerr != nil {
					return cerr
				}
				// err is RunE's result: a profile that did not reach the disk fails the command.
				defer func() {
					if cerr := f.Close(); err == nil {
						err = cerr
					}
				}()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			res, err := bench.TimeSteps(bench.StepTimingConfig{
				Model: model, Spec: spec, Batch: batch, Warmup: warmup, Steps: steps,
				MinDur: time.Duration(seconds * float64(time.Second)), Device: dev,
			})
			if err != nil {
				return err
			}
			return printStepTiming(res, asJSON, memStats)
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "lenet", "model: "+strings.Join(layers.ModelNames(), ", "))
	f.StringVar(&input, "input", "28x28x1", "input shape HxWxC, e.g. 28x28x1 or 32x32x3")
	f.StringVar(&device, "device", "cpu", "cpu, cuda or auto")
	f.IntVar(&batch, "batch", 64, "batch size")
	f.IntVar(&classes, "classes", 10, "number of classes")
	f.IntVar(&steps, "steps", 20, "timed steps (at least)")
	f.IntVar(&warmup, "warmup", 3, "untimed warm-up steps")
	f.Float64Var(&seconds, "seconds", 2, "time for at least this long")
	f.IntVar(&threads, "threads", 0, "CPU threads (0: all cores)")
	f.BoolVar(&asJSON, "json", false, "print one JSON object as the last line")
	f.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile (go tool pprof) to this file")
	f.BoolVar(&memStats, "memstats", false, "with --json, add the process's peak memory (for kiln bench suite)")
	_ = f.MarkHidden("memstats")
	cmd.AddCommand(benchSuiteCmd())
	return cmd
}

// printStepTiming prints res: as text, as one JSON line (--json), or as
// the suite's line with the process's memory (--json --memstats, read after
// the timed steps; bench.Run parses it).
func printStepTiming(res bench.StepTiming, asJSON, memStats bool) error {
	if !asJSON {
		fmt.Printf("%s  input %s  batch %d  params %d  threads %d\n", res.Model, res.Input, res.Batch, res.Params, res.Threads)
		fmt.Printf("%d steps in %.2fs: %.2f ms/step, %.0f images/s, %.1f allocations/step\n",
			res.Steps, res.Seconds, res.StepMillis, res.TrainImagesPerSec, res.AllocsPerStep)
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
	fmt.Fprintln(os.Stdout, string(b))
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
