package bench

import (
	"context"
	"math"
)

// Scaling is training throughput against batch size and against threads.
// One run per point (the training section holds the repeated figures).
type Scaling struct {
	BatchModel string          `json:"batch_model"`
	BatchInput string          `json:"batch_input"`
	Batch      []ScalePoint    `json:"batch"`
	Threads    []ThreadScaling `json:"threads"`
	// ThreadsSkipped says why the thread scan did not run (on the GPU).
	ThreadsSkipped string `json:"threads_skipped,omitempty"`
	// Ranks is data-parallel throughput at 1 and 2 ranks (ranks_scan.go);
	// RanksSkipped says why it did not run.
	Ranks        []RankScaling `json:"ranks,omitempty"`
	RanksSkipped string        `json:"ranks_skipped,omitempty"`
}

// ThreadScaling is one model's throughput at each thread count.
type ThreadScaling struct {
	Model  string       `json:"model"`
	Input  string       `json:"input"`
	Batch  int          `json:"batch"`
	Points []ScalePoint `json:"points"`
}

// ScalePoint is one batch size or thread count.
type ScalePoint struct {
	Batch            int     `json:"batch"`
	Threads          int     `json:"threads"` // 0: all cores
	Kiln             float64 `json:"kiln_images_per_sec,omitempty"`
	KilnRSSPeakBytes int64   `json:"kiln_rss_peak_bytes,omitempty"`
	KilnError        string  `json:"kiln_error,omitempty"`
	Torch            float64 `json:"torch_images_per_sec,omitempty"`
	TorchSetting     string  `json:"torch_setting,omitempty"`
	TorchError       string  `json:"torch_error,omitempty"`
}

// threadCounts is 1, 2, 4, … up to cores, and cores itself.
func threadCounts(cores int) []int {
	var ts []int
	for t := 1; t < cores; t *= 2 {
		ts = append(ts, t)
	}
	return append(ts, cores)
}

func (s *suite) runScaling(ctx context.Context) error {
	sc := &Scaling{BatchModel: "lenet", BatchInput: "28x28x1"}
	batches := []int{8, 16, 32, 64, 128, 256, 512, 1024}
	threadCases := []trainCase{{"lenet", "28x28x1", 64, "fp32"}, {"gmlp", "32x32x3", 128, "fp32"}, {"cbam", "32x32x3", 128, "fp32"}}
	if s.cfg.Quick {
		batches = []int{8, 16}
		threadCases = []trainCase{{"lenet", "28x28x1", 8, "fp32"}}
	}
	if s.cfg.Device == "cuda" {
		threadCases = nil
		sc.ThreadsSkipped = "on the GPU the host threads only launch kernels: the thread scan is a CPU measurement"
	}
	cores := s.rep.Machine.Cores
	all := s.torchSettings(cores)

	// Batch sweep: Kiln on all cores; PyTorch at its best setting, probed
	// per batch size.
	var batchCases []trainCase
	for _, b := range batches {
		batchCases = append(batchCases, trainCase{sc.BatchModel, sc.BatchInput, b, "fp32"})
	}
	torchErrs := map[trainKey]string{}
	if s.torch != nil {
		errs, err := s.probeTorch(ctx, batchCases, all)
		if err != nil {
			return err
		}
		torchErrs = errs
	}
	for _, c := range batchCases {
		p := ScalePoint{Batch: c.Batch}
		s.kilnPoint(ctx, c, s.cfg.Threads, &p)
		s.torchPoint(c, all, torchErrs, &p)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.log.Info().Int("batch", c.Batch).Float64("kiln_img_s", math.Round(p.Kiln)).
			Float64("torch_img_s", math.Round(p.Torch)).Msg("batch scaling")
		sc.Batch = append(sc.Batch, p)
	}

	// Thread sweep: Kiln with --threads t; PyTorch at its best setting with
	// no more than t threads of either kind.
	for _, c := range threadCases {
		ts := ThreadScaling{Model: c.Model, Input: c.Input, Batch: c.Batch}
		for _, t := range threadCounts(cores) {
			p := ScalePoint{Batch: c.Batch, Threads: t}
			s.kilnPoint(ctx, c, t, &p)
			if s.torch != nil {
				sets := settingsUpTo(t)
				errs, err := s.probeTorch(ctx, []trainCase{c}, sets)
				if err != nil {
					return err
				}
				s.torchPoint(c, sets, errs, &p)
			} else {
				p.TorchError = s.rep.Settings.TorchMissing
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			s.log.Info().Str("case", c.String()).Int("threads", t).Float64("kiln_img_s", math.Round(p.Kiln)).
				Float64("torch_img_s", math.Round(p.Torch)).Msg("thread scaling")
			ts.Points = append(ts.Points, p)
		}
		sc.Threads = append(sc.Threads, ts)
	}
	if err := s.runRanks(ctx, sc); err != nil {
		return err
	}
	s.rep.Scaling = sc
	return nil
}

func (s *suite) kilnPoint(ctx context.Context, c trainCase, threads int, p *ScalePoint) {
	if s.kilnCUDA != "" {
		p.KilnError = s.kilnCUDA
		return
	}
	k, err := s.kilnTrain(ctx, c, threads, s.plan.scaleSec, s.plan.trainSteps, s.plan.warmup, false)
	if err != nil {
		p.KilnError = err.Error()
		return
	}
	p.Kiln, p.KilnRSSPeakBytes = k.TrainImagesPerSec, k.RSSPeakBytes
}

func (s *suite) torchPoint(c trainCase, sets []threadSetting, errs map[trainKey]string, p *ScalePoint) {
	if s.torch == nil {
		p.TorchError = s.rep.Settings.TorchMissing
		return
	}
	if set, v, ok := s.bestSetting(c, sets); ok {
		p.Torch, p.TorchSetting = v, set.String()
		return
	}
	p.TorchError = errs[c]
	if p.TorchError == "" {
		p.TorchError = "no PyTorch measurement"
	}
}
