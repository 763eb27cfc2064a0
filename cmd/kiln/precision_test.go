package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// A precision the device lacks, or a misspelt one, stops kiln train, kiln
// bench and kiln tune (a precision in its space) with exit 2 and a reason,
// before any run directory is made.
func TestPrecisionRefusedWithAReason(t *testing.T) {
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	cases := [][]string{
		{"train", "--device", "cpu", "--precision", "tf32", "--run-dir", run},
		{"train", "--device", "cpu", "--precision", "fp16", "--run-dir", run},
		{"bench", "--device", "cpu", "--precision", "tf32", "--steps", "1", "--seconds", "0"},
		{"tune", "--device", "cpu", "--param", "precision=fp32,tf32", "--epochs", "1", "--run-dir", run},
		{"tune", "--device", "cpu", "--precision", "tf32", "--param", "lr=0.01,0.02", "--epochs", "1", "--run-dir", run},
	}
	want := []string{"tf32 is not available on the cpu", `"fp16": want fp32, tf32 or bf16`, "tf32 is not available on the cpu",
		"search space: precision tf32 is not available on the cpu", "--precision tf32: precision tf32 is not available on the cpu"}
	if !engine.CPUHasBF16() {
		cases = append(cases, []string{"train", "--device", "cpu", "--precision", "bf16", "--run-dir", run})
		want = append(want, "precision bf16 is not available")
	}
	for i, args := range cases {
		r := kiln(t, dir, args...)
		if r.code != 2 || !strings.Contains(r.stderr, want[i]) {
			t.Errorf("kiln %v: exit %d, stderr %q; want exit 2 and %q", args, r.code, r.stderr, want[i])
		}
		if _, err := os.Stat(run); err == nil {
			t.Fatalf("kiln %v made %s", args, run)
		}
	}
	if engine.CPUHasBF16() {
		// A bf16 tune resumed where bf16 is not (a requeue onto another
		// node) is refused: its trials all failed there, for good.
		tuneDir, stopped := filepath.Join(dir, "tune"), filepath.Join(dir, "stopped")
		mustRun(t, dir, "tune", "--dataset", "csv", "--data-dir", faultCSV(t), "--model", "mlp", "--hidden", "8", "--epochs", "1",
			"--precision", "bf16", "--param", "lr=0.01,0.05", "--device", "cpu", "--run-dir", tuneDir)
		mustRun(t, dir, "train", "--dataset", "csv", "--data-dir", faultCSV(t), "--model", "mlp", "--hidden", "8", "--epochs", "2",
			"--stop-after-epoch", "1", "--precision", "bf16", "--device", "cpu", "--run-dir", stopped)
		t.Setenv("KILN_CPU_ISA", "avx2")
		// A bf16 run resumed where bf16 is not is told it may go on in fp32.
		if r := kiln(t, dir, "train", "--run-dir", stopped, "--resume"); r.code != 2 || !strings.Contains(r.stderr, "--resume --precision fp32") {
			t.Errorf("a bf16 run resumed at KILN_CPU_ISA=avx2: exit %d, %q", r.code, r.stderr)
		}
		if r := kiln(t, dir, "train", "--precision", "bf16", "--run-dir", run); r.code != 2 || !strings.Contains(r.stderr, "ISA level avx2") {
			t.Errorf("bf16 at KILN_CPU_ISA=avx2: exit %d, %q", r.code, r.stderr)
		}
		if r := kiln(t, dir, "tune", "--run-dir", tuneDir, "--resume"); r.code != 2 || !strings.Contains(r.stderr, "on a machine that has it") {
			t.Errorf("a bf16 tune resumed at KILN_CPU_ISA=avx2: exit %d, %q", r.code, r.stderr)
		}
	}
}

// A bf16 run stopped after its first epoch and resumed ends with the bits of
// the same run trained straight through; config.yaml and the bench line say
// bf16, and the weights stay float32.
func TestBF16RunResumesBitExact(t *testing.T) {
	if !engine.CPUHasBF16() {
		t.Skip("skipped: this CPU has no AVX512_BF16 (or the ISA level in use is below avx512)")
	}
	needMNIST(t)
	dir := t.TempDir()
	args := func(run string) []string {
		return []string{"train", "--model", "lenet", "--dataset", "mnist", "--subset", "0.02", "--epochs", "2", "--seed", "3",
			"--device", "cpu", "--precision", "bf16", "--run-dir", filepath.Join(dir, run)}
	}
	mustRun(t, dir, args("straight")...)
	mustRun(t, dir, append(args("stopped"), "--stop-after-epoch", "1")...)
	mustRun(t, dir, append(args("stopped"), "--resume")...)
	if !sameLastWeights(t, filepath.Join(dir, "straight"), filepath.Join(dir, "stopped")) {
		t.Error("the resumed bf16 run's weights differ from the straight run's")
	}
	if cfg, _ := os.ReadFile(filepath.Join(dir, "straight", "config.yaml")); !strings.Contains(string(cfg), "precision: bf16") {
		t.Errorf("config.yaml does not record the precision:\n%s", cfg)
	}
	if s := readSummary(t, filepath.Join(dir, "straight")); s.TestAccuracy == nil || *s.TestAccuracy < 0.6 {
		t.Errorf("bf16 lenet on 2%% of MNIST, 2 epochs: test accuracy below 0.6 (%s)", filepath.Join(dir, "straight"))
	}
	// kiln eval and predict compute in the run's precision: eval gives
	// the run's test loss to the digit (in fp32 it was 2e-4 off), and
	// --precision fp32 asks for the other.
	straight := filepath.Join(dir, "straight")
	want := *readSummary(t, straight).TestLoss
	if loss := number(t, oneJSONLine(t, mustRun(t, dir, "eval", "--run", straight, "--json").stdout), "loss"); loss != want {
		t.Errorf("kiln eval of the bf16 run: loss %v, the run's %v", loss, want)
	}
	if loss := number(t, oneJSONLine(t, mustRun(t, dir, "eval", "--run", straight, "--json", "--precision", "fp32").stdout), "loss"); loss == want {
		t.Errorf("kiln eval --precision fp32 of the bf16 run: loss %v, the bf16 figure", loss)
	}
	mustRun(t, dir, "predict", "--run", straight, "--index", "0", "--precision", "fp32")
	// The export is float32: it says so for a bf16 run.
	if r := mustRun(t, dir, "export", "--run", straight, "--out", filepath.Join(dir, "bf16.onnx")); !strings.Contains(r.stdout, "the run trained in bf16; the export is float32") {
		t.Errorf("kiln export of a bf16 run says nothing of its precision:\n%s", r.stdout)
	}
	// Resumed in fp32, the run ends there: summary.json says so and eval
	// takes it (it took config.yaml's bf16, figures not the run's).
	mustRun(t, dir, append(args("switched"), "--stop-after-epoch", "1")...)
	r := mustRun(t, dir, "train", "--run-dir", filepath.Join(dir, "switched"), "--resume", "--precision", "fp32")
	if !strings.Contains(r.stderr, "started in bf16 and goes on in fp32") {
		t.Errorf("a bf16 run resumed in fp32 says nothing of it:\n%s", r.stderr)
	}
	switched := readSummary(t, filepath.Join(dir, "switched"))
	if switched.Precision != "fp32" {
		t.Errorf("summary.json of a bf16 run resumed in fp32: precision %q", switched.Precision)
	}
	if loss := number(t, oneJSONLine(t, mustRun(t, dir, "eval", "--run", filepath.Join(dir, "switched"), "--json").stdout), "loss"); loss != *switched.TestLoss {
		t.Errorf("kiln eval of a bf16 run resumed in fp32: loss %v, the run's %v", loss, *switched.TestLoss)
	}
	if r := kiln(t, dir, "eval", "--run", straight, "--precision", "tf32"); r.code != 2 || !strings.Contains(r.stderr, "--precision tf32") {
		t.Errorf("eval --precision tf32 on the CPU: exit %d\n%s", r.code, r.stderr)
	}
	r = mustRun(t, dir, "bench", "--model", "cnn", "--batch", "4", "--steps", "1", "--seconds", "0", "--precision", "bf16", "--json")
	if !strings.Contains(r.stdout, `"precision":"bf16"`) {
		t.Errorf("kiln bench --precision bf16 --json: %s", r.stdout)
	}
}
