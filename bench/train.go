package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"strconv"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
)

// trainCase is one training-throughput workload: a zoo model on a fixed
// synthetic batch, full steps of forward, cross-entropy, backward and SGD
// with momentum 0.9, on both sides, its products in Precision (Kiln's
// --precision; PyTorch's autocast for bf16).
type trainCase struct {
	Model     string `json:"model"`
	Input     string `json:"input"` // HxWxC
	Batch     int    `json:"batch"`
	Precision string `json:"precision"`
}

type trainKey = trainCase

func (c trainCase) String() string {
	return fmt.Sprintf("%s %s batch %d %s", c.Model, c.Input, c.Batch, c.Precision)
}

// TrainResult is one model's training throughput and memory, side by side.
type TrainResult struct {
	Model       string `json:"model"`
	Input       string `json:"input"`
	Batch       int    `json:"batch"`
	Precision   string `json:"precision,omitempty"`
	ParamsKiln  int    `json:"params_kiln,omitempty"`
	ParamsTorch int    `json:"params_torch,omitempty"`

	Kiln             *Sample `json:"kiln_images_per_sec,omitempty"`
	KilnError        string  `json:"kiln_error,omitempty"`
	KilnRSSPeakBytes int64   `json:"kiln_rss_peak_bytes,omitempty"`
	KilnGoSysBytes   int64   `json:"kiln_go_sys_bytes,omitempty"`
	KilnGoHeapBytes  int64   `json:"kiln_go_heap_bytes,omitempty"`
	KilnAllocsStep   float64 `json:"kiln_allocs_per_step"`
	KilnGPUPeakBytes int64   `json:"kiln_gpu_peak_bytes,omitempty"` // device memory at its peak (--device cuda)
	// KilnCUDAGraph: every timed step of the last round was one CUDA graph
	// launch (--device cuda).
	KilnCUDAGraph bool `json:"kiln_cuda_graph,omitempty"`
	// KilnMicroBatch: Kiln's steps ran in micro-batches of this many samples
	// (its default choice, trainer.MicroBatchRule); PyTorch's whole.
	KilnMicroBatch int `json:"kiln_micro_batch,omitempty"`
	// KilnProfile is the kernel profile of the last round (--device cuda).
	KilnProfile *KernelProfile `json:"kiln_kernel_profile,omitempty"`

	Torch             *Sample            `json:"torch_images_per_sec,omitempty"`
	TorchError        string             `json:"torch_error,omitempty"`
	TorchSetting      string             `json:"torch_setting,omitempty"`
	TorchProbe        map[string]float64 `json:"torch_probe,omitempty"`
	TorchRSSPeakBytes int64              `json:"torch_rss_peak_bytes,omitempty"`
	TorchGPUPeakBytes int64              `json:"torch_gpu_peak_bytes,omitempty"` // torch.cuda.max_memory_allocated

	// On the GPU, PyTorch's step captured as a CUDA graph too: PyTorch at
	// its best beside its eager figure, and Kiln's ratio to it.
	TorchGraph      *Sample `json:"torch_graph_images_per_sec,omitempty"`
	TorchGraphError string  `json:"torch_graph_error,omitempty"`
	RatioGraph      *Ratio  `json:"ratio_graph,omitempty"`

	Ratio *Ratio `json:"ratio,omitempty"` // Kiln images/s over PyTorch's
	Error string `json:"error,omitempty"` // e.g. parameter counts that differ
}

// trainCases are every zoo model on 28×28×1 (batch 64) and 32×32×3 (batch
// 128, the gMLP and CBAM targets' batch), once per precision. Quick: two
// small models, batch 8.
func trainCases(quick bool, precisions []engine.Precision) []trainCase {
	var cs []trainCase
	for _, p := range precisions {
		if quick {
			cs = append(cs, trainCase{"lenet", "28x28x1", 8, p.String()}, trainCase{"mlp", "28x28x1", 8, p.String()})
			continue
		}
		for _, in := range []struct {
			input string
			batch int
		}{{"28x28x1", 64}, {"32x32x3", 128}} {
			for _, m := range layers.ModelNames() {
				cs = append(cs, trainCase{m, in.input, in.batch, p.String()})
			}
		}
	}
	return cs
}

func precisionNames(ps []engine.Precision) []string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.String()
	}
	return names
}

// kilnLine is the one-model `kiln bench --json --memstats` line.
type kilnLine struct {
	StepTiming
	MemoryStats
}

// kilnTrain runs one fresh `kiln bench` process. threads 0 is all cores;
// profile adds the kernel profile (the GPU's).
func (s *suite) kilnTrain(ctx context.Context, c trainCase, threads int, seconds float64, steps, warmup int,
	profile bool) (*kilnLine, error) {
	args := []string{"bench", "--model", c.Model, "--input", c.Input, "--batch", strconv.Itoa(c.Batch),
		"--device", s.cfg.Device, "--threads", strconv.Itoa(threads), "--seconds", strconv.FormatFloat(seconds, 'g', -1, 64),
		"--steps", strconv.Itoa(steps), "--warmup", strconv.Itoa(warmup), "--json", "--memstats",
		"--precision", c.Precision}
	if profile {
		args = append(args, "--profile")
	}
	cmd := exec.CommandContext(ctx, s.cfg.Kiln, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		why := tail(stderr.String(), 300)
		if why == "" {
			why = err.Error()
		}
		if s.cfg.Device == "cuda" {
			return nil, fmt.Errorf("no CUDA build/device: %s", why)
		}
		return nil, errors.New(why)
	}
	var l kilnLine
	if err := json.Unmarshal([]byte(lastLine(stdout.String())), &l); err != nil {
		return nil, fmt.Errorf("kiln bench printed no JSON line: %w", err)
	}
	return &l, nil
}

// torchTrainOut is the worker's `train` answer.
type torchTrainOut struct {
	Cases []struct {
		trainCase
		Params  int     `json:"params"`
		IPS     float64 `json:"train_images_per_sec"`
		GPUPeak int64   `json:"gpu_peak_bytes"`
		Error   string  `json:"error"`
		// The GPU's second figure: the step captured whole as a CUDA graph
		// (torch.cuda.graphs), or why not.
		GraphIPS   float64 `json:"train_images_per_sec_graph"`
		GraphError string  `json:"graph_error"`
	} `json:"cases"`
	RSSPeakBytes int64 `json:"rss_peak_bytes"`
}

// torchTrain runs cases in one PyTorch process with setting.
func (s *suite) torchTrain(ctx context.Context, cases []trainCase, set threadSetting, seconds float64) (*torchTrainOut, error) {
	raw, err := s.torch.run(ctx, "train", map[string]any{"cases": cases}, set,
		"--seconds", strconv.FormatFloat(seconds, 'g', -1, 64), "--steps", strconv.Itoa(s.plan.trainSteps),
		"--warmup", strconv.Itoa(s.plan.warmup))
	if err != nil {
		return nil, err
	}
	var out torchTrainOut
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("PyTorch train answer: %w", err)
	}
	if len(out.Cases) != len(cases) {
		return nil, fmt.Errorf("PyTorch answered %d cases of %d", len(out.Cases), len(cases))
	}
	return &out, nil
}

// probeTorch measures cases under each setting not yet in the cache (one
// process per setting, every case in it) and returns the errors by case.
func (s *suite) probeTorch(ctx context.Context, cases []trainCase, settings []threadSetting) (map[trainKey]string, error) {
	errs := map[trainKey]string{}
	for _, set := range settings {
		var todo []trainCase
		for _, c := range cases {
			if _, ok := s.trainProbe[c][set]; !ok {
				todo = append(todo, c)
			}
		}
		if len(todo) == 0 {
			continue
		}
		out, err := s.torchTrain(ctx, todo, set, s.plan.probeSec)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			for _, c := range todo {
				errs[c] = err.Error()
			}
			continue
		}
		for i, r := range out.Cases {
			if r.Error != "" {
				errs[todo[i]] = r.Error
				continue
			}
			if s.trainProbe[todo[i]] == nil {
				s.trainProbe[todo[i]] = map[threadSetting]float64{}
			}
			s.trainProbe[todo[i]][set] = r.IPS
		}
		s.log.Info().Str("setting", set.String()).Int("cases", len(todo)).Msg("PyTorch probe")
	}
	return errs, nil
}

// bestSetting is the fastest probed setting for c among settings.
func (s *suite) bestSetting(c trainCase, settings []threadSetting) (threadSetting, float64, bool) {
	var best threadSetting
	bestIPS, ok := 0.0, false
	for _, set := range settings {
		if v, found := s.trainProbe[c][set]; found && v > bestIPS {
			best, bestIPS, ok = set, v, true
		}
	}
	return best, bestIPS, ok
}

func (s *suite) runTrain(ctx context.Context) error {
	cases := trainCases(s.cfg.Quick, s.cfg.Precisions)
	settings := s.torchSettings(engine.Threads())
	results := make([]TrainResult, len(cases))
	kilnRuns := make([][]float64, len(cases))
	torchRuns := make([][]float64, len(cases))
	graphRuns := make([][]float64, len(cases))
	for i, c := range cases {
		results[i] = TrainResult{Model: c.Model, Input: c.Input, Batch: c.Batch, Precision: c.Precision}
	}
	// Whatever was measured goes into the report, also when the run is
	// interrupted half-way (Ctrl-C writes a partial report).
	defer func() { s.rep.Train = summariseTrain(cases, results, kilnRuns, torchRuns, graphRuns, s.note) }()
	best, haveTorch, err := s.pickTorchSettings(ctx, cases, settings, results)
	if err != nil {
		return err
	}
	for round := range s.plan.rounds {
		for i, c := range cases {
			r := &results[i]
			if s.kilnCUDA != "" {
				r.KilnError = s.kilnCUDA
			} else if r.KilnError == "" {
				profile := s.cfg.Device == "cuda" && round == s.plan.rounds-1
				k, err := s.kilnTrain(ctx, c, s.cfg.Threads, s.plan.trainSec, s.plan.trainSteps, s.plan.warmup, profile)
				if err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					r.KilnError = err.Error()
				} else {
					kilnRuns[i] = append(kilnRuns[i], k.TrainImagesPerSec)
					r.recordKiln(k)
				}
			}
			var tIPS float64
			if haveTorch[i] && r.TorchError == "" {
				out, err := s.torchTrain(ctx, []trainCase{c}, best[i], s.plan.trainSec)
				switch {
				case err != nil && ctx.Err() != nil:
					return ctx.Err()
				case err != nil:
					r.TorchError = err.Error()
				case out.Cases[0].Error != "":
					r.TorchError = out.Cases[0].Error
				default:
					tIPS = out.Cases[0].IPS
					torchRuns[i] = append(torchRuns[i], tIPS)
					if g := out.Cases[0].GraphIPS; g > 0 {
						graphRuns[i] = append(graphRuns[i], g)
					}
					r.recordTorch(out)
				}
			}
			ev := s.log.Info().Int("round", round+1).Str("case", c.String())
			if n := len(kilnRuns[i]); n > 0 && len(kilnRuns[i]) == round+1 {
				ev = ev.Float64("kiln_img_s", math.Round(kilnRuns[i][n-1]))
			}
			if tIPS > 0 {
				ev = ev.Float64("torch_img_s", math.Round(tIPS)).Str("torch_setting", best[i].String())
			}
			ev.Msg("training")
		}
	}
	return nil
}

// pickTorchSettings probes PyTorch's thread settings on every case and
// returns each case's fastest (have: one ran), recording the probe, or why
// none ran, in results.
func (s *suite) pickTorchSettings(ctx context.Context, cases []trainCase, settings []threadSetting,
	results []TrainResult) (best []threadSetting, have []bool, err error) {
	best, have = make([]threadSetting, len(cases)), make([]bool, len(cases))
	if s.torch == nil {
		for i := range results {
			results[i].TorchError = s.rep.Settings.TorchMissing
		}
		return best, have, nil
	}
	s.log.Info().Int("settings", len(settings)).Int("cases", len(cases)).Msg("probing PyTorch thread settings for training")
	errs, err := s.probeTorch(ctx, cases, settings)
	if err != nil {
		return nil, nil, err
	}
	for i, c := range cases {
		r := &results[i]
		set, _, ok := s.bestSetting(c, settings)
		if !ok {
			r.TorchError = errs[c]
			continue
		}
		best[i], have[i] = set, true
		r.TorchSetting = set.String()
		r.TorchProbe = map[string]float64{}
		for k, v := range s.trainProbe[c] {
			r.TorchProbe[k.String()] = v
		}
	}
	return best, have, nil
}

// recordKiln keeps what a Kiln run reports beside its rate: the largest
// memory figures over the rounds, the last profile.
func (r *TrainResult) recordKiln(k *kilnLine) {
	r.ParamsKiln = k.Params
	r.KilnAllocsStep = k.AllocsPerStep
	r.KilnRSSPeakBytes = max(r.KilnRSSPeakBytes, k.RSSPeakBytes)
	r.KilnGoSysBytes = max(r.KilnGoSysBytes, k.GoSysBytes)
	r.KilnGoHeapBytes = max(r.KilnGoHeapBytes, k.GoHeapBytes)
	r.KilnGPUPeakBytes = max(r.KilnGPUPeakBytes, k.GPUPeakBytes)
	r.KilnCUDAGraph, r.KilnMicroBatch = k.CUDAGraph, k.MicroBatch
	if k.Profile != nil {
		r.KilnProfile = k.Profile
	}
}

// recordTorch keeps what a PyTorch run of one case reports beside its rates.
func (r *TrainResult) recordTorch(out *torchTrainOut) {
	r.ParamsTorch = out.Cases[0].Params
	r.TorchRSSPeakBytes = max(r.TorchRSSPeakBytes, out.RSSPeakBytes)
	r.TorchGPUPeakBytes = max(r.TorchGPUPeakBytes, out.Cases[0].GPUPeak)
	if e := out.Cases[0].GraphError; e != "" { // a later round's success does not erase it
		r.TorchGraphError = e
	}
}

// summariseTrain turns each case's runs into its medians and ratio.
func summariseTrain(cases []trainCase, results []TrainResult, kilnRuns, torchRuns, graphRuns [][]float64, note func(string)) []TrainResult {
	for i := range results {
		r := &results[i]
		// A side that failed in a later round keeps no figure: its earlier
		// rounds alone would stand as the median the report says it is.
		if len(kilnRuns[i]) > 0 && r.KilnError == "" {
			k := NewSample(kilnRuns[i])
			r.Kiln = &k
		}
		if len(torchRuns[i]) > 0 && r.TorchError == "" {
			t := NewSample(torchRuns[i])
			r.Torch = &t
		}
		if r.Kiln != nil && r.Torch != nil {
			r.Ratio = SpeedRatio(*r.Kiln, *r.Torch)
		}
		if len(graphRuns[i]) > 0 && r.TorchError == "" && r.TorchGraphError == "" {
			g := NewSample(graphRuns[i])
			r.TorchGraph = &g
			if r.Kiln != nil {
				r.RatioGraph = SpeedRatio(*r.Kiln, g)
			}
		}
		if r.ParamsKiln != 0 && r.ParamsTorch != 0 && r.ParamsKiln != r.ParamsTorch {
			r.Error = fmt.Sprintf("parameter counts differ: Kiln %d, PyTorch %d — not the same architecture", r.ParamsKiln, r.ParamsTorch)
			note(fmt.Sprintf("%s: %s", cases[i], r.Error))
		}
	}
	return results
}
