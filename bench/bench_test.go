package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
	"github.com/rs/zerolog"
)

func TestSampleAndRatios(t *testing.T) {
	s := NewSample([]float64{3, 1, 2, 10})
	if s.Median != 2.5 || s.Min != 1 || s.Max != 10 || !slices.Equal(s.Runs, []float64{3, 1, 2, 10}) {
		t.Fatalf("NewSample: %+v", s)
	}
	if got := NewSample([]float64{4, 2, 9}); got.Median != 4 || math.Abs(got.Spread()-7.0/4) > 1e-12 {
		t.Fatalf("odd count: %+v spread %v", got, got.Spread())
	}
	if e := NewSample(nil); !math.IsNaN(e.Median) || SpeedRatio(e, s) != nil || TimeRatio(s, e) != nil {
		t.Fatal("an empty sample must give no ratio")
	}
	kiln, torch := NewSample([]float64{90, 100, 110}), NewSample([]float64{45, 50, 55})
	if r := SpeedRatio(kiln, torch); r.Median != 2 || r.Low != 90.0/55 || r.High != 110.0/45 {
		t.Fatalf("SpeedRatio: %+v", r)
	}
	// Times: Kiln 1 ms against PyTorch 3 ms is Kiln three times as fast.
	if r := TimeRatio(NewSample([]float64{1e-3}), NewSample([]float64{3e-3})); math.Abs(r.Median-3) > 1e-12 {
		t.Fatalf("TimeRatio: %+v", r)
	}
}

func TestOpWork(t *testing.T) {
	ops := opList(false, false)
	byID := map[string]opSpec{}
	for _, o := range ops {
		if _, dup := byID[o.ID]; dup {
			t.Fatalf("duplicate op id %s", o.ID)
		}
		byID[o.ID] = o
	}
	// LeNet's first convolution: 64 images, 6 maps of 28×28, 25 taps each.
	if got, want := byID["conv_lenet1_fwd"].Work(), 2.0*64*6*28*28*25; got != want {
		t.Fatalf("conv1 forward flops %v, want %v", got, want)
	}
	// It skips the input gradient: backward is one product, not two.
	if byID["conv_lenet1_bwd"].Work() != byID["conv_lenet1_fwd"].Work() || byID["conv_lenet2_bwd"].Work() != 2*byID["conv_lenet2_fwd"].Work() {
		t.Fatal("conv backward flops wrong")
	}
	// Stride 2 halves each output side.
	if got, want := byID["conv_3x3_s2_fwd"].Work(), 2.0*32*128*16*16*64*9; got != want {
		t.Fatalf("strided conv flops %v, want %v", got, want)
	}
	if got := byID["gemm_2048"].Work(); got != 2*math.Pow(2048, 3) {
		t.Fatalf("GEMM flops %v", got)
	}
	if got, want := byID["maxpool_2x2_fwd"].Work(), 4.0*32*64*(32*32+16*16); got != want {
		t.Fatalf("pool bytes %v, want %v", got, want)
	}
	for _, kind := range []string{"conv", "maxpool", "avgpool", "sgu", "gemm", "batchnorm", "layernorm"} {
		if !slices.ContainsFunc(ops, func(o opSpec) bool { return o.Kind == kind }) {
			t.Errorf("no %s op in the list", kind)
		}
	}
	for _, sz := range []string{"256", "512", "1024", "2048"} {
		if _, ok := byID["gemm_"+sz]; !ok {
			t.Errorf("no GEMM %s", sz)
		}
	}
	// ResNet-18's stem: 64 maps of 112×112 from 3×224×224, 49 taps; no
	// input gradient and no bias (batch norm follows).
	stem := byID["resnet18_stem_fwd"]
	if got, want := stem.Work(), 2.0*32*64*112*112*3*49; got != want || stem.Bias || byID["resnet18_stem_bwd"].DX {
		t.Fatalf("ResNet-18 stem: %v flops (want %v), %+v", got, want, stem)
	}
	// Its 1×1 stride-2 shortcut into layer4: 7×7 out of 14×14.
	if got, want := byID["resnet18_l4_short_bwd"].Work(), 2*2.0*32*512*7*7*256; got != want {
		t.Fatalf("layer4 shortcut backward flops %v, want %v", got, want)
	}
	if n := len(slices.DeleteFunc(slices.Clone(ops), func(o opSpec) bool { return !strings.HasPrefix(o.ID, "resnet18_") })); n != 22 {
		t.Fatalf("%d ResNet-18 rows, want its 11 distinct convolutions forward and backward", n)
	}
	// The GPU's list goes on to GEMM 4096; quick mode shrinks ResNet's images.
	if slices.ContainsFunc(ops, func(o opSpec) bool { return o.ID == "gemm_4096" }) ||
		!slices.ContainsFunc(opList(false, true), func(o opSpec) bool { return o.ID == "gemm_4096" }) {
		t.Fatal("GEMM 4096 belongs to the GPU's list only")
	}
	quick := slices.DeleteFunc(opList(true, true), func(o opSpec) bool { return !strings.HasPrefix(o.ID, "resnet18_") })
	if len(quick) != 4 || quick[0].ID != "resnet18_stem_fwd" || quick[0].H != 28 || quick[0].N != 2 || quick[3].ID != "resnet18_l2_short_bwd" {
		t.Fatalf("quick ResNet-18 rows: %+v", quick)
	}
}

// Every op of the quick list runs on Kiln's engine and takes time.
func TestKilnOpsRun(t *testing.T) {
	for _, o := range opList(true, false) {
		fn, release, err := kilnOp(o, engine.CPU)
		if err != nil {
			t.Fatalf("%s: %v", o.ID, err)
		}
		defer release()
		sec, err := timeCalls(fn, nil, 0, 1, 1)
		if err != nil || !(sec > 0) {
			t.Fatalf("%s: %v s, %v", o.ID, sec, err)
		}
		if o.Work() <= 0 || o.ShapeText() == "" || (o.Unit() != "GFLOP/s" && o.Unit() != "GB/s") {
			t.Fatalf("%s: work %v, shape %q, unit %q", o.ID, o.Work(), o.ShapeText(), o.Unit())
		}
	}
	if _, _, err := kilnOp(opSpec{Kind: "fft"}, engine.CPU); err == nil {
		t.Fatal("an unknown op kind must be an error")
	}
}

// The same ops on the GPU (or the emulator in a cudaemu build): the suite's
// --device cuda op timings. The kernels' results are checked against the
// CPU in engine's CUDA tests; this checks that every op builds on the device
// and its timing waits for the queued work.
func TestKilnOpsRunOnCUDA(t *testing.T) {
	cudaOrSkip(t)
	for _, o := range opList(true, true) {
		fn, release, err := kilnOp(o, engine.CUDA)
		if err != nil {
			t.Fatalf("%s: %v", o.ID, err)
		}
		defer release()
		sec, err := timeCalls(fn, cuda.Synchronize, 0, 1, 1)
		if err != nil || !(sec > 0) {
			t.Fatalf("%s on CUDA: %v s, %v", o.ID, sec, err)
		}
	}
}

func TestThreadSettings(t *testing.T) {
	if got := settingsUpTo(1); len(got) != 1 || got[0] != (threadSetting{1, 1}) {
		t.Fatalf("one core: %v", got)
	}
	got := settingsUpTo(4)
	want := []threadSetting{{1, 1}, {1, 4}, {4, 1}, {4, 4}}
	if !slices.Equal(got, want) {
		t.Fatalf("four cores: %v, want %v", got, want)
	}
	env := threadEnv([]string{"PATH=/bin", "OPENBLAS_NUM_THREADS=8", "OMP_NUM_THREADS=8", "OPENBLAS_CORETYPE=Haswell"}, threadSetting{2, 1})
	slices.Sort(env)
	if want := []string{"MKL_NUM_THREADS=2", "OMP_NUM_THREADS=2", "OPENBLAS_NUM_THREADS=1", "PATH=/bin"}; !slices.Equal(env, want) {
		t.Fatalf("env %v, want %v", env, want)
	}
	if got := threadCounts(6); !slices.Equal(got, []int{1, 2, 4, 6}) {
		t.Fatalf("threadCounts(6) = %v", got)
	}
	if got := threadCounts(1); !slices.Equal(got, []int{1}) {
		t.Fatalf("threadCounts(1) = %v", got)
	}
}

func TestMachineName(t *testing.T) {
	for _, c := range []struct {
		m    Machine
		want string
	}{
		{Machine{CPU: "AMD EPYC", Cores: 2}, "amd-epyc-2core"},
		{Machine{CPU: "Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.0GHz", Cores: 16, GPU: "NVIDIA H100 80GB HBM3, 81559 MiB, 550.54"}, "intel-xeon-platinum-8480-2-0ghz-16core-nvidia-h100-80gb-hbm3"},
	} {
		if got := machineName(c.m); got != c.want {
			t.Errorf("machineName(%q) = %q, want %q", c.m.CPU, got, c.want)
		}
	}
	if m := DescribeMachine(t.Context()); m.Cores < 1 || m.Name == "" || m.CPU == "" {
		t.Fatalf("DescribeMachine: %+v", m)
	}
}

func TestLastLineAndTail(t *testing.T) {
	if got := lastLine("noise\n{\"a\":1}\n\n"); got != `{"a":1}` {
		t.Fatalf("lastLine: %q", got)
	}
	if got := tail("  a\nb  ", 10); got != "a b" {
		t.Fatalf("tail: %q", got)
	}
	if got := tail(strings.Repeat("x", 20)+"end", 5); got != "…xxend" {
		t.Fatalf("tail long: %q", got)
	}
}

// sampleReport is a finished report with both engines, as the writers see it.
func sampleReport() *Report {
	s := func(v ...float64) *Sample { x := NewSample(v); return &x }
	curve := func(scale float64) []TTAPoint {
		var c []TTAPoint
		for i := 1; i <= 10; i++ {
			c = append(c, TTAPoint{Step: 10 * i, Seconds: scale * float64(i), Loss: 2 / float64(i)})
		}
		return c
	}
	kiln := s(1e-3, 1.1e-3, 0.9e-3)
	torch := s(2e-3, 2.2e-3)
	return &Report{
		Schema: 1, Date: "2026-11-25T12:00:00Z", Seconds: 60,
		Machine:  Machine{Name: "test-2core", CPU: "Test CPU", Cores: 2, OS: "linux/amd64"},
		Versions: Versions{Go: "go1.26", Kiln: "abc", Torch: "1.13", OpenBLAS: "OpenBLAS 0.3.21"},
		Settings: Settings{Device: "cpu", Torch: true, Rounds: 3, TTACapSeconds: 360, KilnThreads: 2, TorchProbe: []string{"torch 1 / OpenBLAS 1"}},
		Peak:     Peak{Threads: 2, FMAGFLOPS: 230, FMAKind: "AVX2 FMA", SGEMMGFLOPS: 70, SGEMMFrom: "Kiln GEMM 1024", CopyGBPS: 50, CopyBytes: 256 << 20},
		Ops: []OpResult{
			{ID: "conv_fwd", Name: "conv | LeNet 1", Pass: "forward", Shape: "x", Unit: "GFLOP/s", Work: 1e8, Kiln: kiln, KilnRate: 100, KilnPeak: 1.4,
				Torch: torch, TorchRate: 50, TorchSetting: "torch 2 / OpenBLAS 1", Ratio: TimeRatio(*kiln, *torch)},
			{ID: "ln_bwd", Name: "layer norm", Pass: "backward", Shape: "x", Unit: "GB/s", Work: 1e7, Kiln: kiln, KilnRate: 10, KilnPeak: 0.2,
				TorchError: "RuntimeError: no kernel"},
		},
		Train: []TrainResult{
			{Model: "lenet", Input: "28x28x1", Batch: 64, ParamsKiln: 61706, ParamsTorch: 61706, Kiln: s(20000, 21000, 19000),
				Torch: s(18000, 17000, 19000), TorchSetting: "torch 2 / OpenBLAS 1", Ratio: SpeedRatio(*s(20000, 21000, 19000), *s(18000, 17000, 19000)),
				KilnRSSPeakBytes: 40 << 20, TorchRSSPeakBytes: 300 << 20,
				KilnProfile: kernelProfile(cuda.Profile{Kernels: []cuda.KernelTime{{Name: "conv2d_forward_64x64_f32", Launches: 4,
					Device: 2 * time.Millisecond}}, Launches: 118, Copies: 2, Memsets: 20, Device: 2 * time.Millisecond,
					Wall: 4 * time.Millisecond}, 2)},
			{Model: "gmlp", Input: "32x32x3", Batch: 128, KilnError: "kiln bench failed: boom", TorchError: "torch failed"},
		},
		Scaling: &Scaling{BatchModel: "lenet", BatchInput: "28x28x1",
			Batch: []ScalePoint{{Batch: 8, Kiln: 5000, Torch: 2000}, {Batch: 16, Kiln: 9000, TorchError: "x"}},
			Threads: []ThreadScaling{{Model: "lenet", Input: "28x28x1", Batch: 64,
				Points: []ScalePoint{{Batch: 64, Threads: 1, Kiln: 11000, Torch: 10000}, {Batch: 64, Threads: 2, Kiln: 20000, Torch: 15000}}}}},
		TTA: []TTAResult{{ID: "mnist-99", Model: "lenet", Dataset: "mnist", Target: 0.99, Recipe: "sgd",
			Kiln:  &TTARun{Reached: true, Epochs: 2, Seconds: 10, BestAccuracy: 0.991, Curve: curve(1), PerEpoch: []TTAEpoch{{Epoch: 2, TestAccuracy: 0.991}}},
			Torch: &TTARun{Reached: true, Epochs: 3, Seconds: 30, BestAccuracy: 0.992, Curve: curve(3), PerEpoch: []TTAEpoch{{Epoch: 3, TestAccuracy: 0.992}}}}},
		Notes: []string{"a note"},
	}
}

func TestWriteReportFiles(t *testing.T) {
	dir := t.TempDir()
	s := &suite{rep: sampleReport(), base: filepath.Join(dir, "test-2core-2026-11-25"), start: time.Now()}
	if err := s.write(false); err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{"test-2core-2026-11-25.json", "test-2core-2026-11-25.md", "test-2core-2026-11-25-ratios.png",
		"test-2core-2026-11-25-peak.png", "test-2core-2026-11-25-scaling-batch.png", "test-2core-2026-11-25-scaling-threads.png",
		"test-2core-2026-11-25-loss-mnist-99.png"}
	if !slices.Equal(s.rep.Files, wantFiles) {
		t.Fatalf("files %v, want %v", s.rep.Files, wantFiles)
	}
	for _, f := range wantFiles[2:] {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if cfg, err := png.DecodeConfig(bytes.NewReader(b)); err != nil || cfg.Width < 100 || cfg.Height < 100 {
			t.Fatalf("%s: not a sensible PNG: %v %+v", f, err, cfg)
		}
	}
	var back Report
	b, _ := os.ReadFile(filepath.Join(dir, wantFiles[0]))
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("JSON does not read back: %v", err)
	}
	if back.Partial || len(back.Ops) != 2 || back.Train[0].Ratio == nil || back.TTA[0].Kiln.Epochs != 2 {
		t.Fatalf("JSON lost figures: %+v", back)
	}
	md, _ := os.ReadFile(filepath.Join(dir, wantFiles[1]))
	text := string(md)
	for _, want := range []string{
		"# Kiln against PyTorch 1.13", "## Op level", "## Training throughput and memory", "## Scaling", "## Time to accuracy",
		"**2.10×** (1.82–2.44)", // conv: 1 ms against 2.1 ms
		`conv \| LeNet 1`,
		"![Kiln/PyTorch ratios](test-2core-2026-11-25-ratios.png)",
		"![training loss against wall time, mnist-99](test-2core-2026-11-25-loss-mnist-99.png)",
		"10.0 s, 2 epochs (99.10%)", "**3.00×**", // time to accuracy: 30 s against 10 s
		"n/a¹", "- Kiln gmlp 32x32x3: kiln bench failed: boom", "- PyTorch layer norm backward: RuntimeError: no kernel",
		"230 GFLOP/s", "a note",
		"## Kiln's kernels in a training step (GPU)", "59 launches, 1 copies back, 0 uploads, 10 memsets a step",
		"| `conv2d_forward_64x64_f32` | 2.0 | 1.000 | 500.0 | 50.0% |",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
	// Every table row has as many cells as its header.
	var cols int
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "|") {
			cols = 0
			continue
		}
		n := strings.Count(strings.ReplaceAll(line, `\|`, ""), "|")
		if cols == 0 {
			cols = n
		} else if n != cols {
			t.Errorf("table row with %d cells under a header of %d: %s", n-1, cols-1, line)
		}
	}
	var term bytes.Buffer
	writeTerminal(&term, s.rep)
	for _, want := range []string{"conv | LeNet 1", "2.10x", "1.11x", "mnist-99"} {
		if !strings.Contains(term.String(), want) {
			t.Errorf("terminal table lacks %q:\n%s", want, term.String())
		}
	}
}

func TestPartialAndTorchlessReport(t *testing.T) {
	dir := t.TempDir()
	rep := sampleReport()
	rep.Settings.Torch, rep.Settings.TorchMissing = false, "--no-torch: Kiln's figures alone"
	for i := range rep.Ops {
		rep.Ops[i].Torch, rep.Ops[i].Ratio = nil, nil
	}
	rep.Train, rep.TTA = rep.Train[:1], nil
	rep.Train[0].Torch, rep.Train[0].Ratio = nil, nil
	s := &suite{rep: rep, base: filepath.Join(dir, "x"), start: time.Now()}
	if err := s.write(true); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(rep.Files, "x-ratios.png") {
		t.Fatal("a ratio plot without PyTorch")
	}
	md, _ := os.ReadFile(filepath.Join(dir, "x.md"))
	for _, want := range []string{"Partial report", "not compared: --no-torch", "# Kiln benchmark suite"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("markdown lacks %q", want)
		}
	}
}

// A second report of the same machine, ISA level and day takes the next
// free name: no earlier report (another section's, a run at once) is
// replaced.
func TestReserveBaseKeepsEarlierReports(t *testing.T) {
	dir := t.TempDir()
	var got []string
	for range 3 {
		base, err := reserveBase(dir, "m-avx2-2026-12-07")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, filepath.Base(base))
	}
	// A name whose markdown alone is there (its JSON removed) is taken too.
	if err := os.WriteFile(filepath.Join(dir, "m-avx2-2026-12-07-4.md"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	base, err := reserveBase(dir, "m-avx2-2026-12-07")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, filepath.Base(base))
	want := []string{"m-avx2-2026-12-07", "m-avx2-2026-12-07-2", "m-avx2-2026-12-07-3", "m-avx2-2026-12-07-5"}
	if !slices.Equal(got, want) {
		t.Fatalf("names %v, want %v", got, want)
	}
}

// A side that failed in a later round has no median and no ratio: its
// first rounds alone are not the median of the rounds the report names.
func TestFailedRoundLeavesNoRatio(t *testing.T) {
	cases := []trainCase{{Model: "lenet", Input: "28x28x1", Batch: 64}}
	results := []TrainResult{{TorchError: "PyTorch worker (train) failed: signal: segmentation fault"}}
	got := summariseTrain(cases, results, [][]float64{{100, 110, 105}}, [][]float64{{50}}, [][]float64{{60}}, func(string) {})
	if r := got[0]; r.Kiln == nil || r.Torch != nil || r.Ratio != nil || r.TorchGraph != nil || r.RatioGraph != nil {
		t.Fatalf("want Kiln's median alone, got torch %v ratio %v graph %v", r.Torch, r.Ratio, r.TorchGraph)
	}
	// PyTorch's CUDA-graph side alone failed: its column goes, eager stays.
	results = []TrainResult{{TorchGraphError: "capture failed"}}
	got = summariseTrain(cases, results, [][]float64{{100, 110, 105}}, [][]float64{{50, 52, 51}}, [][]float64{{60}}, func(string) {})
	if r := got[0]; r.Torch == nil || r.Ratio == nil || r.TorchGraph != nil || r.RatioGraph != nil {
		t.Fatalf("want the eager ratio alone, got graph %v ratio %v", r.TorchGraph, r.RatioGraph)
	}
}

// Ctrl-C while PyTorch is being found stops the suite with a partial
// report; it is not taken for "PyTorch not available".
func TestInterruptWhileFindingPyTorch(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 to start")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	rep, err := Run(ctx, Config{Quick: true, Sections: []string{"ops"}, Python: py, Out: t.TempDir(), Kiln: "/bin/false", Log: zerolog.Nop()})
	if !errors.Is(err, context.Canceled) || rep == nil || !rep.Partial || len(rep.Ops) != 0 || rep.Settings.TorchMissing != "" {
		t.Fatalf("err %v, report %+v", err, rep)
	}
}
