package main

import (
	"bytes"
	"encoding/json"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/bench"
	"github.com/kiln-ml/kiln/engine"
)

// jsonKeys returns the keys of the flat JSON object in line, in order, and
// fails on nesting.
func jsonKeys(t *testing.T, line string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not a JSON object: %q", line)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		v, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		if _, nested := v.(json.Delim); nested {
			t.Fatalf("%q is not flat in %q", k, line)
		}
	}
	return keys
}

// The one-model line is read by other tools (issue 2): its fields and their
// order stay as they are; a new field comes at the end (cpu_isa, issue 16;
// precision, issue 13).
func TestBenchJSONLineIsUnchanged(t *testing.T) {
	want := []string{"model", "batch", "device", "input", "params", "threads", "steps", "seconds", "step_ms",
		"train_images_per_sec", "allocs_per_step", "final_loss", "cpu_isa", "precision"}
	r := mustRun(t, t.TempDir(), "bench", "--model", "lenet", "--batch", "2", "--steps", "1", "--warmup", "1",
		"--seconds", "0", "--device", "cpu", "--json")
	line := lastLineOf(r.stdout)
	if got := jsonKeys(t, line); !slices.Equal(got, want) {
		t.Fatalf("kiln bench --json keys\n got %v\nwant %v", got, want)
	}
	m := oneJSONLine(t, line+"\n")
	if m["precision"] != "fp32" {
		t.Errorf("precision %v, want fp32 by default", m["precision"])
	}
	if m["model"] != "lenet" || number(t, m, "batch") != 2 || m["device"] != "cpu" || number(t, m, "params") != 61706 ||
		!(number(t, m, "train_images_per_sec") > 0) {
		t.Fatalf("kiln bench --json: %v", m)
	}
	// The suite's form adds the memory figures after the same fields.
	r = mustRun(t, t.TempDir(), "bench", "--model", "lenet", "--batch", "2", "--steps", "1", "--warmup", "1",
		"--seconds", "0", "--json", "--memstats")
	got := jsonKeys(t, lastLineOf(r.stdout))
	if !slices.Equal(got[:len(want)], want) || !slices.Contains(got, "rss_peak_bytes") || !slices.Contains(got, "go_sys_bytes") {
		t.Fatalf("kiln bench --json --memstats keys: %v", got)
	}
}

func lastLineOf(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// The whole suite in quick mode without PyTorch: every section runs on
// Kiln and the JSON, the markdown and the plots are written and well formed.
func TestBenchSuiteQuick(t *testing.T) {
	out := filepath.Join(t.TempDir(), "results")
	r := mustRun(t, t.TempDir(), "bench", "suite", "--quick", "--no-torch", "--out", out, "--name", "ci")
	if !strings.Contains(r.stdout, "wrote ") || !strings.Contains(r.stdout, "time to accuracy") {
		t.Fatalf("no terminal tables:\n%s", r.stdout)
	}
	matches, _ := filepath.Glob(filepath.Join(out, "ci-*-quick.json"))
	if len(matches) != 1 {
		t.Fatalf("want one JSON report in %s, found %v", out, matches)
	}
	b, err := os.ReadFile(matches[0])
	if err != nil {
		t.Fatal(err)
	}
	var rep bench.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report JSON: %v", err)
	}
	if rep.Partial || !rep.Settings.Quick || rep.Settings.Torch || !strings.Contains(rep.Settings.TorchMissing, "--no-torch") ||
		rep.Machine.Name != "ci" || rep.Machine.Cores < 1 || rep.Versions.Go == "" || rep.Peak.CopyGBPS <= 0 ||
		rep.Settings.KilnISA == "" || !strings.HasPrefix(filepath.Base(matches[0]), "ci-"+rep.Settings.KilnISA+"-") {
		t.Fatalf("report header: %+v %+v %+v %+v", rep.Settings, rep.Machine, rep.Versions, rep.Peak)
	}
	if len(rep.Ops) < 10 {
		t.Fatalf("%d op results", len(rep.Ops))
	}
	for _, o := range rep.Ops {
		if o.Kiln == nil || !(o.KilnRate > 0) || o.KilnError != "" || o.Torch != nil || o.Ratio != nil {
			t.Errorf("op %s %s: %+v", o.Name, o.Pass, o)
		}
	}
	if len(rep.Train) == 0 {
		t.Fatal("no training results")
	}
	for _, tr := range rep.Train {
		if tr.Kiln == nil || !(tr.Kiln.Median > 0) || tr.ParamsKiln == 0 || tr.KilnRSSPeakBytes <= 0 || tr.KilnError != "" {
			t.Errorf("training %s: %+v", tr.Model, tr)
		}
	}
	if rep.Scaling == nil || len(rep.Scaling.Batch) < 2 || len(rep.Scaling.Threads) == 0 || !(rep.Scaling.Batch[0].Kiln > 0) {
		t.Fatalf("scaling: %+v", rep.Scaling)
	}
	if len(rep.TTA) != 1 {
		t.Fatalf("time to accuracy: %+v", rep.TTA)
	}
	if tta := rep.TTA[0]; tta.Kiln == nil {
		// Without MNIST the benchmark says why instead of giving a number.
		if !strings.HasPrefix(tta.KilnError, "cannot run: ") {
			t.Fatalf("time to accuracy neither ran nor said why: %+v", tta)
		}
	} else if tta.Kiln.Epochs != 1 || len(tta.Kiln.Curve) == 0 || tta.Recipe == "" {
		t.Fatalf("time to accuracy: %+v", tta)
	}
	if len(rep.Files) < 3 || rep.Files[0] != filepath.Base(matches[0]) {
		t.Fatalf("files: %v", rep.Files)
	}
	for _, f := range rep.Files[1:] {
		b, err := os.ReadFile(filepath.Join(out, f))
		if err != nil {
			t.Fatal(err)
		}
		switch filepath.Ext(f) {
		case ".png":
			if _, err := png.DecodeConfig(bytes.NewReader(b)); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		case ".md":
			for _, want := range []string{"Quick mode", "## Machine peaks", "## Op level", "## Training throughput", "## Scaling",
				"## Time to accuracy", "not compared: --no-torch", "![", "GEMM"} {
				if !strings.Contains(string(b), want) {
					t.Errorf("%s lacks %q", f, want)
				}
			}
		}
	}
}

func TestBenchSuiteUsageAndCUDA(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"bench", "suite", "--device", "tpu"},
		{"bench", "suite", "--sections", "ops,nope"},
		{"bench", "suite", "--rounds", "-1"},
		{"bench", "suite", "--threads", "2000"},
		{"bench", "suite", "--name", "///"},
		{"bench", "suite", "--precision", "fp16"},
		{"bench", "suite", "--precision", "fp32,tf32"}, // tf32 is the GPU's
	} {
		if r := kiln(t, dir, args...); r.code != 2 || len(errorLines(r.stderr)) != 1 {
			t.Errorf("kiln %s: exit %d, stderr %q (want a usage error)", strings.Join(args, " "), r.code, r.stderr)
		}
	}
	// --device cuda goes through to kiln bench; without a CUDA build or
	// device every Kiln figure says so instead of a number.
	out := filepath.Join(dir, "cuda")
	mustRun(t, dir, "bench", "suite", "--quick", "--no-torch", "--device", "cuda", "--sections", "train", "--out", out, "--name", "gpu")
	rep, _ := suiteReport(t, out, "gpu")
	if rep.Settings.Device != "cuda" || len(rep.Train) == 0 {
		t.Fatalf("cuda report: %+v", rep)
	}
	for _, tr := range rep.Train {
		if tr.Kiln == nil && !strings.Contains(tr.KilnError, "no CUDA build/device") {
			t.Errorf("%s on cuda: neither a figure nor the reason: %q", tr.Model, tr.KilnError)
		}
	}
}

// --precision fp32,bf16 runs the training section once per precision: Kiln's
// --precision against PyTorch's autocast (real PyTorch where it is installed),
// a row per model and precision in the JSON and the tables.
func TestBenchSuitePrecisions(t *testing.T) {
	if !engine.CPUHasBF16() {
		t.Skip("skipped: this CPU has no AVX512_BF16, so bf16 is refused (TestBenchSuiteUsageAndCUDA checks refusals)")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "results")
	args := []string{"bench", "suite", "--quick", "--sections", "train", "--precision", "fp32,bf16", "--out", out, "--name", "p"}
	withTorch := exec.Command("/usr/bin/python3", "-c", "import torch").Run() == nil
	if !withTorch {
		args = append(args, "--no-torch")
	}
	r := mustRun(t, dir, args...)
	rep, path := suiteReport(t, out, "p")
	if !slices.Equal(rep.Settings.Precisions, []string{"fp32", "bf16"}) {
		t.Fatalf("settings precisions %v", rep.Settings.Precisions)
	}
	var rows []string
	for _, tr := range rep.Train {
		rows = append(rows, tr.Model+" "+tr.Precision)
		if tr.Kiln == nil || tr.KilnError != "" {
			t.Errorf("Kiln %s %s: %+v", tr.Model, tr.Precision, tr)
		}
		if withTorch && (tr.Torch == nil || tr.Ratio == nil || tr.TorchError != "") {
			t.Errorf("PyTorch %s %s: %+v", tr.Model, tr.Precision, tr)
		}
	}
	if want := []string{"lenet fp32", "mlp fp32", "lenet bf16", "mlp bf16"}; !slices.Equal(rows, want) {
		t.Fatalf("training rows %v, want %v", rows, want)
	}
	md, _ := os.ReadFile(strings.TrimSuffix(path, ".json") + ".md")
	if !strings.Contains(string(md), "| precision |") || !strings.Contains(string(md), "| 8 | bf16 |") ||
		!strings.Contains(r.stdout, "\tbf16\t") && !strings.Contains(r.stdout, " bf16 ") {
		t.Fatalf("no precision column in the report:\n%s\n%s", md, r.stdout)
	}
}

// suiteReport reads the one JSON report named name-* in out.
func suiteReport(t *testing.T, out, name string) (bench.Report, string) {
	t.Helper()
	matches, _ := filepath.Glob(filepath.Join(out, name+"-*.json"))
	if len(matches) != 1 {
		t.Fatalf("reports: %v", matches)
	}
	b, _ := os.ReadFile(matches[0])
	var rep bench.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	return rep, matches[0]
}

// kiln bench --cpuprofile stopped by Ctrl-C writes the profile it has: it
// left an empty file.
func TestBenchProfileSurvivesCtrlC(t *testing.T) {
	dir := t.TempDir()
	prof := filepath.Join(dir, "cpu.prof")
	cmd := exec.Command(kilnBin, "bench", "--model", "mlp", "--batch", "8", "--seconds", "60", "--steps", "100000000",
		"--device", "cpu", "--threads", "1", "--cpuprofile", prof)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, func() bool { _, err := os.Stat(prof); return err == nil })
	time.Sleep(time.Second) // a few samples
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); cmd.ProcessState.ExitCode() != 130 {
		t.Fatalf("Ctrl-C: %v (exit %d), want 130\n%s", err, cmd.ProcessState.ExitCode(), stderr.String())
	}
	b, err := os.ReadFile(prof)
	if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("the profile after Ctrl-C: %d bytes, want a gzipped pprof profile (%v)\n%s", len(b), err, stderr.String())
	}
}

// A TMPDIR that cannot be used stops the suite before it reserves its
// report's name, saying so: each try left a "partial report" of nothing,
// and the message named a bare path.
func TestBenchSuiteWithABadTMPDIR(t *testing.T) {
	out := t.TempDir()
	cmd := exec.Command(kilnBin, "bench", "suite", "--quick", "--no-torch", "--sections", "ops", "--threads", "1", "--out", out)
	cmd.Env = append(os.Environ(), "TMPDIR=/nonexistent/kiln")
	b, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "TMPDIR") {
		t.Fatalf("bench suite with TMPDIR=/nonexistent/kiln: %v\n%s", err, b)
	}
	if entries, _ := os.ReadDir(out); len(entries) > 0 {
		t.Fatalf("a suite that could not start left %v in --out", entries)
	}
}
