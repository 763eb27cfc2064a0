package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
)

// OpResult is one op and pass, side by side. Times are seconds per call.
type OpResult struct {
	ID    string  `json:"id"`
	Name  string  `json:"name"`
	Pass  string  `json:"pass"`
	Shape string  `json:"shape"`
	Unit  string  `json:"unit"` // GFLOP/s or GB/s
	Work  float64 `json:"work"` // flops or bytes per call

	Kiln      *Sample `json:"kiln_seconds,omitempty"`
	KilnRate  float64 `json:"kiln_rate,omitempty"`    // in Unit, from the median
	KilnPeak  float64 `json:"kiln_of_peak,omitempty"` // fraction of the SGEMM peak or of the copy bandwidth
	KilnFMA   float64 `json:"kiln_of_fma,omitempty"`  // compute ops: fraction of the FMA ceiling
	KilnError string  `json:"kiln_error,omitempty"`

	Torch        *Sample            `json:"torch_seconds,omitempty"`
	TorchRate    float64            `json:"torch_rate,omitempty"`
	TorchPeak    float64            `json:"torch_of_peak,omitempty"`
	TorchSetting string             `json:"torch_setting,omitempty"`
	TorchProbe   map[string]float64 `json:"torch_probe_seconds,omitempty"`
	TorchError   string             `json:"torch_error,omitempty"`

	Ratio *Ratio `json:"ratio,omitempty"` // Kiln's speed over PyTorch's
}

type torchOpsOut struct {
	Ops []struct {
		ID      string  `json:"id"`
		Seconds float64 `json:"seconds"`
		Error   string  `json:"error"`
	} `json:"ops"`
}

// torchOps times ops in one PyTorch process; the answer is by op id.
func (s *suite) torchOps(ctx context.Context, ops []opSpec, set threadSetting, seconds float64) (map[string]float64, map[string]string, error) {
	raw, err := s.torch.run(ctx, "ops", map[string]any{"ops": ops}, set, "--seconds", strconv.FormatFloat(seconds, 'g', -1, 64))
	if err != nil {
		return nil, nil, err
	}
	var out torchOpsOut
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, nil, fmt.Errorf("PyTorch ops answer: %w", err)
	}
	times, errs := map[string]float64{}, map[string]string{}
	for _, o := range out.Ops {
		if o.Error != "" {
			errs[o.ID] = o.Error
		} else {
			times[o.ID] = o.Seconds
		}
	}
	return times, errs, nil
}

func (s *suite) runOps(ctx context.Context) error {
	ops := opList(s.cfg.Quick, s.cfg.Device == "cuda")
	res := make([]OpResult, len(ops))
	for i, o := range ops {
		res[i] = OpResult{ID: o.ID, Name: o.Name, Pass: o.Pass, Shape: o.ShapeText(), Unit: o.Unit(), Work: o.Work()}
	}
	kilnFns, sync, release := s.buildKilnOps(ops, res)
	defer release()
	best, err := s.probeTorchOps(ctx, ops, res)
	if err != nil {
		return err
	}
	kilnRuns, torchRuns, err := s.timeOps(ctx, ops, res, kilnFns, sync, best)
	if err != nil {
		return err
	}
	s.rateOps(ops, res, kilnRuns, torchRuns)
	s.rep.Ops = res
	return nil
}

// buildKilnOps builds every op on the run's device (nil where it fails,
// with the error in res); sync waits for the device, release frees the
// ops' memory.
func (s *suite) buildKilnOps(ops []opSpec, res []OpResult) (fns []func() error, sync func() error, release func()) {
	fns = make([]func() error, len(ops))
	dev, sync, devErr := engine.CPU, func() error { return nil }, ""
	if s.cfg.Device == "cuda" {
		// The op timings run in this process: it must be the CUDA build.
		dev, sync = engine.CUDA, cuda.Synchronize
		if _, err := engine.OpenDevice(engine.CUDA); err != nil {
			devErr = fmt.Sprintf("no CUDA device in this process (run the suite from the CUDA build, kiln-cuda): %v", err)
		}
	}
	var releases []func()
	for i, o := range ops {
		if devErr != "" {
			res[i].KilnError = devErr
			continue
		}
		fn, rel, err := kilnOp(o, dev)
		if err != nil {
			res[i].KilnError = err.Error()
			continue
		}
		releases = append(releases, rel)
		fns[i] = fn
	}
	return fns, sync, func() {
		for _, rel := range slices.Backward(releases) {
			rel()
		}
	}
}

// probeTorchOps runs every op under every PyTorch thread setting, briefly,
// and returns each op's best setting (the one its timed rounds use).
func (s *suite) probeTorchOps(ctx context.Context, ops []opSpec, res []OpResult) (map[string]threadSetting, error) {
	best := map[string]threadSetting{}
	if s.torch == nil {
		for i := range res {
			res[i].TorchError = s.rep.Settings.TorchMissing
		}
		return best, nil
	}
	probe := map[string]map[threadSetting]float64{}
	for _, set := range s.torchSettings(engine.Threads()) {
		times, errs, err := s.torchOps(ctx, ops, set, s.plan.opProbeSec)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			for i := range res {
				res[i].TorchError = err.Error()
			}
			continue
		}
		for i := range res {
			if e, ok := errs[res[i].ID]; ok {
				res[i].TorchError = e
			}
		}
		for id, t := range times {
			if probe[id] == nil {
				probe[id] = map[threadSetting]float64{}
			}
			probe[id][set] = t
		}
		s.log.Info().Str("setting", set.String()).Int("ops", len(times)).Msg("PyTorch op probe")
	}
	for i := range res {
		r := &res[i]
		p := probe[r.ID]
		if len(p) == 0 {
			continue
		}
		r.TorchError = ""
		r.TorchProbe = map[string]float64{}
		bt := math.Inf(1)
		for set, t := range p {
			r.TorchProbe[set.String()] = t
			if t < bt || (t == bt && set.String() < best[r.ID].String()) {
				bt, best[r.ID] = t, set
			}
		}
		r.TorchSetting = best[r.ID].String()
	}
	return best, nil
}

// timeOps times the ops in alternating rounds, Kiln's then PyTorch's (each
// op at its best setting), and returns every round's seconds a call.
func (s *suite) timeOps(ctx context.Context, ops []opSpec, res []OpResult, kilnFns []func() error, sync func() error,
	best map[string]threadSetting) (kilnRuns, torchRuns [][]float64, err error) {
	kilnRuns, torchRuns = make([][]float64, len(ops)), make([][]float64, len(ops))
	dur := time.Duration(s.plan.opSec * float64(time.Second))
	for round := range s.plan.rounds {
		for i, fn := range kilnFns {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			if fn == nil || res[i].KilnError != "" {
				continue
			}
			t, err := timeCalls(fn, sync, dur, 3, 2)
			if err != nil {
				res[i].KilnError = err.Error()
				continue
			}
			kilnRuns[i] = append(kilnRuns[i], t)
		}
		s.log.Info().Int("round", round+1).Int("ops", len(ops)).Msg("Kiln ops timed")
		if s.torch == nil {
			continue
		}
		if err := s.timeTorchRound(ctx, ops, res, best, torchRuns); err != nil {
			return nil, nil, err
		}
		s.log.Info().Int("round", round+1).Msg("PyTorch ops timed")
	}
	return kilnRuns, torchRuns, nil
}

// timeTorchRound times one round of PyTorch's ops, one process per thread
// setting, each op at its best, appending to torchRuns.
func (s *suite) timeTorchRound(ctx context.Context, ops []opSpec, res []OpResult, best map[string]threadSetting,
	torchRuns [][]float64) error {
	groups := map[threadSetting][]opSpec{}
	for _, o := range ops {
		if set, ok := best[o.ID]; ok {
			groups[set] = append(groups[set], o)
		}
	}
	for _, set := range s.torchSettings(engine.Threads()) {
		group := groups[set]
		if len(group) == 0 {
			continue
		}
		times, errs, err := s.torchOps(ctx, group, set, s.plan.opSec)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			for _, o := range group {
				res[indexOf(ops, o.ID)].TorchError = err.Error()
			}
			continue
		}
		for _, o := range group {
			i := indexOf(ops, o.ID)
			if e, ok := errs[o.ID]; ok {
				res[i].TorchError = e
			} else if t, ok := times[o.ID]; ok {
				torchRuns[i] = append(torchRuns[i], t)
			}
		}
	}
	return nil
}

// rateOps turns the runs into medians, rates and ratios, raises the SGEMM
// peak to the fastest GEMM row, and gives each op its share of the peak.
func (s *suite) rateOps(ops []opSpec, res []OpResult, kilnRuns, torchRuns [][]float64) {
	peak := &s.rep.Peak
	for i := range res {
		r := &res[i]
		// A side that failed in a later round keeps no figure: its earlier
		// rounds alone would stand as the median the report says it is.
		if len(kilnRuns[i]) > 0 && r.KilnError == "" {
			k := NewSample(kilnRuns[i])
			r.Kiln = &k
			r.KilnRate = r.Work / k.Median / 1e9
		}
		if len(torchRuns[i]) > 0 && r.TorchError == "" {
			t := NewSample(torchRuns[i])
			r.Torch = &t
			r.TorchRate = r.Work / t.Median / 1e9
		}
		if r.Kiln != nil && r.Torch != nil {
			r.Ratio = TimeRatio(*r.Kiln, *r.Torch)
		}
		if ops[i].Kind == "gemm" {
			if r.KilnRate > peak.SGEMMGFLOPS {
				peak.SGEMMGFLOPS, peak.SGEMMFrom = r.KilnRate, "Kiln "+r.Name
			}
			if r.TorchRate > peak.SGEMMGFLOPS {
				peak.SGEMMGFLOPS, peak.SGEMMFrom = r.TorchRate, "PyTorch (OpenBLAS) "+r.Name
				if s.cfg.Device == "cuda" {
					peak.SGEMMFrom = "PyTorch on the GPU " + r.Name
				}
			}
		}
	}
	for i := range res {
		s.shareOfPeak(&res[i])
	}
}

// shareOfPeak sets r's fraction of the machine's ceiling for its unit and
// logs the op.
func (s *suite) shareOfPeak(r *OpResult) {
	peak := &s.rep.Peak
	ceiling := peak.CopyGBPS
	switch {
	case s.cfg.Device == "cuda" && r.Unit == "GFLOP/s":
		ceiling = max(peak.GPUGFLOPS, peak.SGEMMGFLOPS)
	case s.cfg.Device == "cuda":
		ceiling = peak.GPUGBPS
	case r.Unit == "GFLOP/s":
		ceiling = peak.SGEMMGFLOPS
		if peak.FMAGFLOPS > 0 {
			r.KilnFMA = r.KilnRate / peak.FMAGFLOPS
		}
	}
	if ceiling > 0 {
		r.KilnPeak, r.TorchPeak = r.KilnRate/ceiling, r.TorchRate/ceiling
	}
	ev := s.log.Info().Str("op", r.Name+" "+r.Pass)
	if r.Kiln != nil {
		ev = ev.Str("kiln_ms", fmtMS(r.Kiln.Median)).Float64("kiln_"+rateKey(r.Unit), round1(r.KilnRate))
	}
	if r.Torch != nil {
		ev = ev.Str("torch_ms", fmtMS(r.Torch.Median)).Str("torch_setting", r.TorchSetting)
	}
	if r.Ratio != nil {
		ev = ev.Float64("ratio", math.Round(r.Ratio.Median*100)/100)
	}
	ev.Msg("op")
}

func rateKey(unit string) string {
	if unit == "GB/s" {
		return "gbps"
	}
	return "gflops"
}

func indexOf(ops []opSpec, id string) int {
	for i, o := range ops {
		if o.ID == id {
			return i
		}
	}
	return -1
}
