// Package bench is Kiln's benchmark harness: `kiln bench suite` and
// `make bench`. It measures, in one run, op-level speed (convolution,
// pooling, SGU gating, GEMM, batch norm, layer norm) against the machine's
// measured peaks, training throughput and peak memory of every zoo model,
// time to accuracy on MNIST, Fashion-MNIST and MNIST 0-vs-1, and scaling
// with batch size and threads — each beside PyTorch doing the same work when
// a python3 with torch is found.
//
// Fairness rules the harness enforces rather than trusts:
//   - PyTorch runs at its best thread setting: every pair of torch threads
//     and OpenBLAS threads drawn from {1, cores} is probed per workload and
//     the fastest is used (and reported); Kiln runs on all cores.
//   - Kiln and PyTorch runs alternate, round after round, and the figures
//     are medians with their spread; warm-up steps and calls are not timed.
//   - Training throughput is measured in a fresh process per run (the
//     one-model `kiln bench --json`, and one PyTorch process), so the peak
//     resident memory belongs to that model alone.
//   - Parameter counts of the PyTorch twins (bench/torch/models.py) are
//     compared with Kiln's; a mismatch is reported next to the figures.
//   - Anything that cannot run says why in place of a number.
//
// Results go to <out>/<machine>-<isa>-<date>.json (no <isa> on the GPU) and .md with PNG plots beside
// them; the JSON is rewritten after every section, so an interrupted run
// keeps what it measured.
package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/kiln-ml/kiln/engine"
)

// Sections of the suite, in the order they run.
var Sections = []string{"ops", "train", "scaling", "tta"}

// Config is one run of the suite.
type Config struct {
	Device  string // "cpu" or "cuda" (passed through to kiln bench and PyTorch)
	Out     string // results folder
	Name    string // machine label for the file names; empty: from the CPU (and GPU)
	Quick   bool   // a smoke test: tiny shapes, short timings, one round
	NoTorch bool   // Kiln alone
	Python  string // the python3 that has torch; empty: /usr/bin/python3, then python3 on PATH
	// Kiln is the kiln binary: training throughput runs `Kiln bench --json`
	// in a fresh process per measurement.
	Kiln    string
	Threads int // Kiln's CPU threads (0: all cores)
	// Precisions are what the training section's models compute their
	// products in, each model once per precision (empty: fp32): Kiln's
	// --precision against PyTorch's autocast.
	Precisions []engine.Precision
	Rounds     int      // alternating rounds (0: 3, or 1 with Quick)
	Sections   []string // a subset of Sections (empty: all)
	Log        zerolog.Logger
	Stdout     io.Writer // the terminal tables (nil: none)
}

// plan holds the durations a run uses; Quick shrinks every one.
type plan struct {
	rounds                       int
	opSec, opProbeSec            float64
	trainSec, probeSec, scaleSec float64
	trainSteps, warmup           int
	ttaCap                       float64 // seconds of training per engine and task
	fmaDur                       time.Duration
	copyBytes                    int64
}

func newPlan(c Config) plan {
	p := plan{rounds: 3, opSec: 0.3, opProbeSec: 0.1, trainSec: 2, probeSec: 0.8, scaleSec: 1,
		trainSteps: 5, warmup: 3, fmaDur: 200 * time.Millisecond, copyBytes: 256 << 20, ttaCap: 360}
	if c.Quick {
		p = plan{rounds: 1, opSec: 0.005, opProbeSec: 0.005, trainSec: 0.02, probeSec: 0.02, scaleSec: 0.02,
			trainSteps: 2, warmup: 1, fmaDur: 10 * time.Millisecond, copyBytes: 8 << 20, ttaCap: 30}
	}
	if c.Rounds > 0 {
		p.rounds = c.Rounds
	}
	return p
}

// Settings record how the run was made.
type Settings struct {
	Device        string   `json:"device"`
	Quick         bool     `json:"quick"`
	Sections      []string `json:"sections"`
	Torch         bool     `json:"torch"`
	TorchMissing  string   `json:"torch_missing,omitempty"` // why PyTorch was not compared
	Rounds        int      `json:"rounds"`
	Precisions    []string `json:"precisions,omitempty"` // the training section's
	KilnThreads   int      `json:"kiln_threads"`
	KilnISA       string   `json:"kiln_isa,omitempty"` // the CPU engine's ISA level (KILN_CPU_ISA), on the CPU
	TorchProbe    []string `json:"torch_settings_probed,omitempty"`
	OpSeconds     float64  `json:"op_seconds"`
	TrainSeconds  float64  `json:"train_seconds"`
	TTACapSeconds float64  `json:"tta_cap_seconds"`
}

// Report is everything one run measured: the JSON file's contents.
type Report struct {
	Schema   int           `json:"schema"`
	Date     string        `json:"date"`
	Partial  bool          `json:"partial,omitempty"` // sections still to run
	Seconds  float64       `json:"seconds"`           // the suite's duration
	Machine  Machine       `json:"machine"`
	Versions Versions      `json:"versions"`
	Settings Settings      `json:"settings"`
	Peak     Peak          `json:"peak"`
	Ops      []OpResult    `json:"ops,omitempty"`
	Train    []TrainResult `json:"train,omitempty"`
	Scaling  *Scaling      `json:"scaling,omitempty"`
	TTA      []TTAResult   `json:"time_to_accuracy,omitempty"`
	Notes    []string      `json:"notes,omitempty"`
	Files    []string      `json:"files"`
}

// suite is one run in progress.
type suite struct {
	cfg   Config
	plan  plan
	log   zerolog.Logger
	torch *torchRunner
	rep   *Report
	start time.Time
	base  string // output path without extension
	// trainProbe caches PyTorch training throughput by case and setting, so
	// the scaling and time-to-accuracy sections reuse the training probe.
	trainProbe map[trainKey]map[threadSetting]float64
	kilnCUDA   string // why Kiln cannot run on CUDA, when it cannot
}

// Run runs the suite and writes its files; the report is returned even when
// an error stopped it part-way (what was measured is written).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Device == "" {
		cfg.Device = "cpu"
	}
	if cfg.Device != "cpu" && cfg.Device != "cuda" {
		return nil, fmt.Errorf("--device %q: want cpu or cuda", cfg.Device)
	}
	for _, s := range cfg.Sections {
		if !slices.Contains(Sections, s) {
			return nil, fmt.Errorf("unknown section %q (have %s)", s, strings.Join(Sections, ", "))
		}
	}
	if len(cfg.Sections) == 0 {
		cfg.Sections = Sections
	}
	if err := CheckName(cfg.Name); err != nil {
		return nil, err
	}
	if cfg.Out == "" {
		cfg.Out = filepath.Join("bench", "results")
	}
	if cfg.Kiln == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the kiln binary: %w", err)
		}
		cfg.Kiln = exe
	}
	if cfg.Threads > 0 {
		engine.SetThreads(cfg.Threads)
	}
	if len(cfg.Precisions) == 0 {
		cfg.Precisions = []engine.Precision{engine.FP32}
	}
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return nil, fmt.Errorf("results folder: %w", err)
	}
	s := &suite{cfg: cfg, plan: newPlan(cfg), log: cfg.Log, start: time.Now(),
		trainProbe: map[trainKey]map[threadSetting]float64{}}
	now := time.Now().UTC()
	rev, dirty := kilnRevision(ctx)
	s.rep = &Report{Schema: 1, Date: now.Format(time.RFC3339), Partial: true,
		Machine:  DescribeMachine(ctx),
		Versions: Versions{Go: runtime.Version(), Kiln: rev, KilnDirty: dirty},
		Settings: Settings{Device: cfg.Device, Quick: cfg.Quick, Sections: cfg.Sections, Rounds: s.plan.rounds,
			Precisions:  precisionNames(cfg.Precisions),
			KilnThreads: engine.Threads(), OpSeconds: s.plan.opSec, TrainSeconds: s.plan.trainSec,
			TTACapSeconds: s.plan.ttaCap},
	}
	if cfg.Name != "" {
		s.rep.Machine.Name = slug(cfg.Name)
	}
	label := s.rep.Machine.Name
	if cfg.Device == "cpu" {
		s.rep.Settings.KilnISA = engine.CPUISA()
		label += "-" + s.rep.Settings.KilnISA
	}
	label += "-" + now.Format("2006-01-02")
	if cfg.Quick {
		label += "-quick"
	}
	// Before the report's name is reserved: a TMPDIR that cannot be used
	// left a partial report of nothing at each try.
	tmp, err := os.MkdirTemp("", "kiln-bench-")
	if err != nil {
		return nil, fmt.Errorf("a temporary folder (TMPDIR=%q): %w", os.Getenv("TMPDIR"), err)
	}
	defer os.RemoveAll(tmp)
	if s.base, err = reserveBase(cfg.Out, label); err != nil {
		return nil, err
	}
	if err := s.write(true); err != nil { // the reserved name holds a report from the start
		return nil, err
	}

	if err := s.setupTorch(ctx, tmp); err != nil {
		return s.rep, err
	}
	if cfg.Device == "cuda" {
		s.checkKilnCUDA(ctx)
	}
	s.log.Info().Str("machine", s.rep.Machine.CPU).Int("cores", s.rep.Machine.Cores).
		Bool("torch", s.torch != nil).Bool("quick", cfg.Quick).Strs("sections", cfg.Sections).
		Str("expected", s.expected()).Msg("benchmark suite")

	s.measurePeak()
	if cfg.Device == "cuda" {
		s.measureGPUPeak(ctx)
	}
	var runErr error
	for _, sec := range Sections {
		if !slices.Contains(cfg.Sections, sec) {
			continue
		}
		t := time.Now()
		switch sec {
		case "ops":
			runErr = s.runOps(ctx)
		case "train":
			runErr = s.runTrain(ctx)
		case "scaling":
			runErr = s.runScaling(ctx)
		case "tta":
			runErr = s.runTTA(ctx)
		}
		s.log.Info().Str("section", sec).Str("took", time.Since(t).Round(time.Second).String()).
			Str("elapsed", time.Since(s.start).Round(time.Second).String()).Msg("section done")
		if runErr != nil {
			break
		}
		if err := s.write(true); err != nil {
			return s.rep, err
		}
	}
	s.rep.Partial = runErr != nil
	if err := s.write(runErr != nil); err != nil {
		return s.rep, err
	}
	if runErr != nil {
		return s.rep, runErr
	}
	if cfg.Stdout != nil {
		writeTerminal(cfg.Stdout, s.rep)
	}
	return s.rep, nil
}

// expected is the run's expected duration on two cores, for the progress log.
func (s *suite) expected() string {
	if s.cfg.Quick {
		return "a few seconds"
	}
	// Estimates for a quiet 2-core machine; time to accuracy is dominated by
	// the Fashion-MNIST cnn (capped at 6 minutes per engine).
	mins := map[string]float64{"ops": 2, "train": 6, "scaling": 1.5, "tta": 9}
	if s.torch == nil {
		mins = map[string]float64{"ops": 0.7, "train": 1.5, "scaling": 0.5, "tta": 4}
	}
	total := 0.0
	for _, sec := range s.cfg.Sections {
		total += mins[sec]
	}
	return fmt.Sprintf("about %.0f minutes on 2 cores", total*float64(s.plan.rounds)/3+0.5)
}

// setupTorch finds PyTorch, or notes why Kiln's figures stand alone; the
// error is an interruption's.
func (s *suite) setupTorch(ctx context.Context, tmp string) error {
	set := &s.rep.Settings
	if s.cfg.NoTorch {
		set.TorchMissing = "--no-torch: Kiln's figures alone"
		return nil
	}
	py := s.cfg.Python
	if py == "" {
		py = "/usr/bin/python3"
		if _, err := os.Stat(py); err != nil {
			if p, err := exec.LookPath("python3"); err == nil {
				py = p
			}
		}
	}
	r, err := newTorchRunner(ctx, py, tmp, s.cfg.Device)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		set.TorchMissing = fmt.Sprintf("PyTorch not available (%s): %v; Kiln's figures alone", py, err)
		s.log.Warn().Msg(set.TorchMissing)
		return nil
	}
	s.torch = r
	set.Torch = true
	for _, t := range s.torchSettings(engine.Threads()) {
		set.TorchProbe = append(set.TorchProbe, t.String())
	}
	v := &s.rep.Versions
	v.Torch, v.Python, v.OpenBLAS = r.info.Torch, r.info.Python, r.info.OpenBLAS
	if r.info.BLASKind != "" {
		v.TorchBLAS = r.info.BLASKind + " (" + r.info.BLASLibrary + ")"
		v.TorchCPU = "ATen " + cmp.Or(r.info.ATenCPU, "?") + ", oneDNN " + cmp.Or(r.info.OneDNNISA, "?")
	}
	if r.info.CUDA {
		v.CUDA = r.info.CUDAVer
	}
	return nil
}

// checkKilnCUDA asks the kiln binary for one CUDA training step; when it
// cannot, every Kiln measurement on CUDA says why.
func (s *suite) checkKilnCUDA(ctx context.Context) {
	_, err := s.kilnTrain(ctx, trainCase{Model: "lenet", Input: "28x28x1", Batch: 8}, 0, 0, 1, 0, false)
	if err != nil {
		s.kilnCUDA = err.Error()
		s.note("Kiln on CUDA: " + s.kilnCUDA)
	}
}

func (s *suite) note(msg string) {
	s.rep.Notes = append(s.rep.Notes, msg)
	s.log.Warn().Msg(msg)
}

// measurePeak measures the FMA ceiling and the copy bandwidth with Kiln's
// thread count.
func (s *suite) measurePeak() {
	p := &s.rep.Peak
	p.Threads = engine.Threads()
	if haveFMALoop {
		p.FMAGFLOPS = measureFMA(p.Threads, s.plan.fmaDur)
		p.FMAKind = fmaKind()
	} else {
		p.FMAError = "built without cgo: no way to issue vector FMAs to measure the peak"
	}
	p.CopyBytes = s.plan.copyBytes
	p.CopyGBPS = measureCopy(p.Threads, p.CopyBytes)
	s.log.Info().Float64("fma_gflops", round1(p.FMAGFLOPS)).Float64("copy_gbps", round1(p.CopyGBPS)).
		Int("threads", p.Threads).Msg("peak")
}

// measureGPUPeak asks PyTorch for the GPU's GEMM rate (cuBLAS) and copy
// bandwidth: the ceilings the op-level section measures the GPU ops against.
func (s *suite) measureGPUPeak(ctx context.Context) {
	p := &s.rep.Peak
	if s.torch == nil {
		p.GPUError = "needs PyTorch with CUDA: " + s.rep.Settings.TorchMissing
		return
	}
	raw, err := s.torch.run(ctx, "peak", nil, threadSetting{1, 1}, "--seconds", "0.5")
	if err != nil {
		p.GPUError = err.Error()
		return
	}
	var out struct {
		GFLOPS float64 `json:"sgemm_gflops"`
		GBPS   float64 `json:"copy_gbps"`
		Device string  `json:"device"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		p.GPUError = err.Error()
		return
	}
	p.GPU, p.GPUGFLOPS, p.GPUGBPS = out.Device, out.GFLOPS, out.GBPS
	s.log.Info().Str("gpu", out.Device).Float64("gpu_sgemm_gflops", round1(out.GFLOPS)).
		Float64("gpu_copy_gbps", round1(out.GBPS)).Msg("GPU peak")
}

// Files lists the files a finished run wrote (the JSON first).
func (r *Report) FilePaths(out string) []string {
	paths := make([]string, len(r.Files))
	for i, f := range r.Files {
		paths[i] = filepath.Join(out, f)
	}
	return paths
}

func round1(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }
