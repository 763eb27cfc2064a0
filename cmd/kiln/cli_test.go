package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/engine/safetensors"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

// These tests run the real kiln binary, built once by TestMain without the
// race detector (so that training stays fast under go test -race), and check
// exit statuses, error lines and the files the commands write.

var (
	kilnBin string
	workDir string // TestMain's temporary directory
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kiln-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	workDir, kilnBin = dir, filepath.Join(dir, "kiln")
	build := exec.Command(goTool(), "build", "-o", kilnBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "cmd/kiln tests: building kiln:", err)
		return 1
	}
	return m.Run()
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

type result struct {
	stdout, stderr string
	code           int
}

// kiln runs the binary in dir and fails the test on a panic trace.
func kiln(t *testing.T, dir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(kilnBin, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("kiln %v: %v", args, err)
	}
	if strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine ") {
		t.Fatalf("kiln %v panicked:\n%s", strings.Join(args, " "), r.stderr)
	}
	return r
}

// mustRun runs kiln and fails the test unless it succeeds.
func mustRun(t *testing.T, dir string, args ...string) result {
	t.Helper()
	r := kiln(t, dir, args...)
	if r.code != 0 {
		t.Fatalf("kiln %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r
}

// errorLines are the lines of stderr that report the error.
func errorLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "kiln:") {
			out = append(out, l)
		}
	}
	return out
}

func needMNIST(t *testing.T) {
	t.Helper()
	if _, err := data.Locate("mnist", ""); err != nil {
		t.Skipf("real MNIST not available: %v", err)
	}
}

var (
	runOnce sync.Once
	runDir  string
	runErr  string
)

// tinyRun trains LeNet for one epoch on 1% of MNIST, once, and returns its
// run directory.
func tinyRun(t *testing.T) string {
	t.Helper()
	needMNIST(t)
	runOnce.Do(func() {
		dir := filepath.Join(workDir, "tiny")
		r := kiln(t, workDir, "train", "--dataset", "mnist", "--subset", "0.01", "--epochs", "1", "--seed", "1", "--device", "cpu", "--run-dir", dir)
		if r.code != 0 {
			runErr = fmt.Sprintf("tiny training run: exit %d\n%s", r.code, r.stderr)
			return
		}
		runDir = dir
	})
	if runDir == "" {
		t.Fatal(runErr)
	}
	return runDir
}

// A run's config.yaml names its data set: without it (or empty, as a power
// cut leaves it) eval, predict and export took MNIST, the default, for it
// and scored a Fashion-MNIST run on digits without a word.
func TestRunWithoutItsConfigNamesItsData(t *testing.T) {
	run := filepath.Join(t.TempDir(), "run")
	if err := os.CopyFS(run, os.DirFS(tinyRun(t))); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(run, trainer.ConfigFile)
	for _, damage := range []string{"is missing", "is empty"} {
		if damage == "is missing" {
			os.Remove(cfg)
		} else {
			os.WriteFile(cfg, []byte("\n"), 0o644)
		}
		for _, args := range [][]string{{"eval", "--run", run}, {"predict", "--run", run, "--count", "2"},
			{"export", "--run", run, "--out", filepath.Join(t.TempDir(), "m.onnx")}} {
			if r := kiln(t, run, args...); r.code == 0 || !strings.Contains(r.stderr, "config.yaml "+damage) {
				t.Errorf("kiln %s with config.yaml that %s: exit %d, %q", args[0], damage, r.code, r.stderr)
			}
		}
	}
	os.Remove(cfg)
	mustRun(t, run, "eval", "--run", run, "--dataset", "mnist", "--subset", "0.01")
}

func readSummary(t *testing.T, dir string) trainer.Summary {
	t.Helper()
	var s trainer.Summary
	b, err := os.ReadFile(filepath.Join(dir, trainer.SummaryFile))
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// oneJSONLine checks that out is exactly one line holding a JSON object.
func oneJSONLine(t *testing.T, out string) map[string]any {
	t.Helper()
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("want one JSON line, got %q", out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("%v in %q", err, out)
	}
	return m
}

func number(t *testing.T, m map[string]any, key string) float64 {
	t.Helper()
	v, ok := m[key].(float64)
	if !ok {
		t.Fatalf("%q is not a number in %v", key, m)
	}
	return v
}

func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("unknown.yaml", "epochs: 1\nlrr: 0.1\n")
	write("unknown.json", `{"epochs": 1, "lrr": 0.1}`)
	write("regression.yaml", "regression: true\nepochs: 1\n")
	write("w.safetensors", "not a safetensors file at all")
	const either = -1 // status 1 or 2
	cases := []struct {
		name string
		args []string
		code int
		want string // in the error line
	}{
		{"negative lr", []string{"train", "--lr", "-0.1"}, 2, "--lr"},
		{"negative lr with =", []string{"train", "--lr=-1"}, 2, "--lr"},
		{"batch 0", []string{"train", "--batch", "0"}, 2, "--batch"},
		{"unknown model", []string{"train", "--model", "resnet9000"}, 2, "resnet9000"},
		{"unknown data set", []string{"train", "--dataset", "imagenet"}, either, "imagenet"},
		{"config with an unknown key", []string{"train", "--config", "unknown.yaml"}, 2, "lrr"},
		{"json config with an unknown key", []string{"train", "--config", "unknown.json"}, 2, "lrr"},
		{"missing config", []string{"train", "--config", "missing.yaml"}, 2, "missing.yaml"},
		{"unknown flag", []string{"train", "--bogus"}, 2, "bogus"},
		{"eval without weights", []string{"eval"}, 2, "--weights"},
		{"eval missing weights", []string{"eval", "--weights", "missing.safetensors"}, 2, "missing.safetensors"},
		{"eval unknown model", []string{"eval", "--model", "resnet9000", "--weights", "w.safetensors"}, 2, "resnet9000"},
		{"eval unknown data set", []string{"eval", "--dataset", "imagenet", "--weights", "w.safetensors"}, 2, "imagenet"},
		{"eval batch 0", []string{"eval", "--batch", "0", "--weights", "w.safetensors"}, 2, "--batch"},
		{"eval hidden on lenet", []string{"eval", "--hidden", "64", "--weights", "w.safetensors"}, 2, "--hidden: model lenet has no such setting"},
		{"train hidden on lenet", []string{"train", "--hidden", "64"}, 2, "--hidden 64: model lenet has no such setting"},
		{"train gamma with onecycle", []string{"train", "--gamma", "0.5"}, 2, "--gamma 0.5: is for the step, multistep or exp schedule"},
		{"lr-find epochs", []string{"lr-find", "--epochs", "9"}, 2, "--epochs: kiln lr-find does not read it"},
		{"lr-find log-every", []string{"lr-find", "--log-every", "20"}, 2, "--log-every: kiln lr-find does not read it"},
		{"bench negative threads", []string{"bench", "--threads", "-1"}, 2, "--threads -1: must be in [0, 1024]"},
		{"bench too many threads", []string{"bench", "--threads", "5000"}, 2, "--threads 5000"},
		{"train augment on mnist", []string{"train", "--augment"}, 2, "--augment true: mirrors digits"},
		{"train plateau without validation", []string{"train", "--schedule", "plateau", "--val-fraction", "0"}, 2, "needs a validation split (--val-fraction > 0"},
		{"regression on classes", []string{"train", "--config", "regression.yaml"}, 2, "regression true: this data is a classification"},
		{"train patience alone", []string{"train", "--patience", "3"}, 2, "--patience 3: needs --early-stop"},
		{"eval bad classes", []string{"eval", "--classes", "0,x", "--weights", "w.safetensors"}, 2, "--classes"},
		{"eval missing run", []string{"eval", "--run", "no-such-run"}, 2, "no-such-run"},
		{"predict without input", []string{"predict", "--weights", "w.safetensors"}, 2, "--image"},
		{"predict image and index", []string{"predict", "--weights", "w.safetensors", "--image", "a.png", "--index", "0"}, 2, "--image"},
		{"predict top 0", []string{"predict", "--weights", "w.safetensors", "--index", "0", "--top", "0"}, 2, "--top"},
		{"predict missing image", []string{"predict", "--weights", "w.safetensors", "--image", "missing.png"}, 2, "missing.png"},
		{"export without out", []string{"export", "--weights", "w.safetensors"}, 2, "--out"},
		{"train drop-last batch over the data", []string{"train", "--subset", "0.01", "--batch", "100000", "--drop-last"}, 2, "training samples, which then make no batch with --drop-last"},
		{"train epochs past counting", []string{"train", "--subset", "0.01", "--epochs", "1024819115206086201"}, 2, "--epochs 1024819115206086201: at"},
		{"bench seconds NaN", []string{"bench", "--seconds", "NaN"}, 2, "--seconds NaN: must be in [0, 86400]"},
		{"bench seconds Inf", []string{"bench", "--seconds", "Inf"}, 2, "--seconds +Inf: must be in [0, 86400]"},
		{"tune over optimizers with an unread gamma", []string{"tune", "--param", "optimizer=sgd,adam", "--gamma", "0.5"}, 2, "--gamma 0.5: is for the step"},
		{"tune of classes by rmse", []string{"tune", "--param", "lr=0.1,0.2", "--metric", "val_rmse"}, 2, "--metric val_rmse: the data is a classification"},
		{"tune halving by test_top5", []string{"tune", "--param", "lr=0.1,0.2", "--strategy", "halving", "--metric", "test_top5", "--trials", "2"}, 2, "--metric test_top5: halving compares"},
		{"tune halving by steps with another val_every", []string{"tune", "--param", "lr=0.1,0.2", "--strategy", "halving", "--trials", "2", "--rung-unit", "steps", "--min-resource", "10", "--val-every", "7"}, 2, "--val-every 7: halving by steps validates at every rung"},
		{"tune halving flag under grid", []string{"tune", "--param", "lr=0.1,0.2", "--strategy", "grid", "--eta", "1"}, 2, "--eta 1: is for --strategy halving; this tune's is grid"},
		{"tune parallel 0", []string{"tune", "--param", "lr=0.1,0.2", "--parallel", "0"}, 2, "--parallel 0: must be at least 1"},
		{"micro-batch with batch norm", []string{"train", "--model", "cnn", "--subset", "0.01", "--micro-batch", "8"}, 2, "--micro-batch 8: the model's batch norm"},
		{"bool flag with a value after a space", []string{"train", "--nesterov", "false"}, 2, "--nesterov=false"},
		{"unknown command", []string{"bogus"}, 2, `unknown command "bogus"`},
		{"bench unknown model", []string{"bench", "--model", "foo"}, 2, `--model "foo": unknown`},
		{"bench classes 0", []string{"bench", "--classes", "0"}, 2, "--classes 0: must be at least 1"},
		{"summary hidden on lenet", []string{"summary", "--model", "lenet", "--hidden", "5"}, 2, "--hidden: model lenet has no such setting"},
		{"tune flag the space sets", []string{"tune", "--param", "lr=0.1,0.2", "--lr", "0.3"}, 2, "--lr 0.3: the search space sets lr too"},
		{"export onnx as safetensors", []string{"export", "--weights", "w.safetensors", "--format", "onnx", "--out", "y.safetensors"}, 2, "the file would be named as the other format"},
		{"export corrupt weights", []string{"export", "--weights", "w.safetensors", "--out", "x.safetensors"}, 1, "w.safetensors"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := kiln(t, dir, c.args...)
			if c.code == either && r.code != 1 && r.code != 2 || c.code != either && r.code != c.code {
				t.Errorf("exit status %d, want %d\n%s", r.code, c.code, r.stderr)
			}
			lines := errorLines(r.stderr)
			if len(lines) != 1 {
				t.Fatalf("want one error line, got %d in:\n%s", len(lines), r.stderr)
			}
			if !strings.Contains(lines[0], c.want) {
				t.Errorf("error line %q does not mention %q", lines[0], c.want)
			}
		})
	}
}

func TestConfigFilePrecedence(t *testing.T) {
	needMNIST(t)
	dir := t.TempDir()
	cfg := "dataset: mnist\nsubset: 0.02\nepochs: 1\nlr: 0.01\nbatch: 32\nseed: 7\n"
	if err := os.WriteFile(filepath.Join(dir, "run.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, dir, "train", "--config", "run.yaml", "--lr", "0.02", "--device", "cpu", "--run-dir", "r")
	c, err := trainer.LoadConfigFile(filepath.Join(dir, "r", trainer.ConfigFile), trainer.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if c.LR != 0.02 {
		t.Errorf("lr %v: the flag (0.02) should win over the file (0.01)", c.LR)
	}
	if c.Batch != 32 || c.Epochs != 1 || c.Subset != 0.02 || c.Seed != 7 {
		t.Errorf("batch %d, epochs %d, subset %v, seed %d: want the file's 32, 1, 0.02, 7", c.Batch, c.Epochs, c.Subset, c.Seed)
	}
	if def := trainer.DefaultConfig(); c.Model != def.Model || c.Optimizer != def.Optimizer || c.Momentum != def.Momentum {
		t.Errorf("model %q, optimizer %q, momentum %v: want the defaults", c.Model, c.Optimizer, c.Momentum)
	}
}

func TestEvalJSON(t *testing.T) {
	run := tinyRun(t)
	sum := readSummary(t, run)
	if sum.TestAccuracy == nil {
		t.Fatal("summary.json has no test_accuracy")
	}
	check := func(args ...string) {
		t.Helper()
		m := oneJSONLine(t, mustRun(t, workDir, args...).stdout)
		acc, loss := number(t, m, "accuracy"), number(t, m, "loss")
		if acc < 0 || acc > 1 {
			t.Errorf("accuracy %v is not a fraction", acc)
		}
		// The run evaluated the same weights on the same test subset.
		if math.Abs(acc-*sum.TestAccuracy) > 1e-12 || math.Abs(loss-*sum.TestLoss) > 1e-9 {
			t.Errorf("kiln %s: accuracy %v loss %v, the run's summary says %v and %v", strings.Join(args, " "), acc, loss, *sum.TestAccuracy, *sum.TestLoss)
		}
	}
	check("eval", "--run", run, "--json")
	check("eval", "--model", "lenet", "--dataset", "mnist", "--weights", filepath.Join(run, sum.Weights), "--subset", "0.01", "--seed", "1", "--json")

	r := mustRun(t, workDir, "eval", "--run", run)
	if strings.Count(r.stdout, "\n") != 1 || !strings.Contains(r.stdout, "accuracy") {
		t.Errorf("readable eval: %q", r.stdout)
	}
}

// kiln eval --split val evaluates the validation split the run held out
// (its seed, subset and val_fraction): the run's last validation, of the
// last weights, to the last digit; --split train the rest.
func TestEvalValidationSplit(t *testing.T) {
	run := tinyRun(t)
	var val struct {
		Split          string
		Loss, Accuracy float64
	}
	b, err := os.ReadFile(filepath.Join(run, trainer.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if strings.Contains(line, `"split":"val"`) {
			if err := json.Unmarshal([]byte(line), &val); err != nil {
				t.Fatal(err)
			}
		}
	}
	if val.Split != "val" {
		t.Fatalf("the run has no validation record:\n%s", b)
	}
	last := filepath.Join(run, trainer.LastWeights)
	m := oneJSONLine(t, mustRun(t, workDir, "eval", "--run", run, "--weights", last, "--split", "val", "--json").stdout)
	if acc, loss := number(t, m, "accuracy"), number(t, m, "loss"); math.Abs(acc-val.Accuracy) > 1e-12 || math.Abs(loss-val.Loss) > 1e-9 || m["split"] != "val" {
		t.Errorf("eval --split val: %v, the run's last validation %+v", m, val)
	}
	train := oneJSONLine(t, mustRun(t, workDir, "eval", "--run", run, "--split", "train", "--json").stdout)
	if n, v := number(t, train, "count"), number(t, m, "count"); n != 9*v && n != 9*v+1 && n != 9*v-1 {
		t.Errorf("train %v and val %v samples: want the 9:1 of val_fraction 0.1", n, v)
	}
	if r := mustRun(t, workDir, "eval", "--run", run, "--split", "val"); !strings.Contains(r.stdout, "mnist val: accuracy") {
		t.Errorf("readable eval --split val: %q", r.stdout)
	}
	if r := kiln(t, workDir, "eval", "--run", run, "--split", "valid"); r.code != 2 || !strings.Contains(r.stderr, "want test, val or train") {
		t.Errorf("--split valid: exit %d\n%s", r.code, r.stderr)
	}
}

func TestEvalMismatchedWeights(t *testing.T) {
	run := tinyRun(t)
	w := filepath.Join(run, trainer.LastWeights)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"eval", "--weights", w, "--classes", "0,1"}, "does not fit"},
		{[]string{"eval", "--weights", w, "--model", "mlp"}, "lenet"},
		{[]string{"eval", "--run", run, "--classes", "0,1"}, "--classes"},
	} {
		r := kiln(t, workDir, c.args...)
		lines := errorLines(r.stderr)
		if r.code != 1 || len(lines) != 1 || !strings.Contains(lines[0], c.want) {
			t.Errorf("kiln %s: exit %d, stderr %q; want exit 1 and one error line with %q", strings.Join(c.args, " "), r.code, r.stderr, c.want)
		}
	}
}

func TestEvalRegressionJSON(t *testing.T) {
	needMNIST(t)
	dir := t.TempDir()
	mustRun(t, dir, "train", "--dataset", "mnist-rotation", "--model", "mlp", "--hidden", "16", "--subset", "0.01", "--epochs", "1", "--device", "cpu", "--run-dir", "r")
	sum := readSummary(t, filepath.Join(dir, "r"))
	m := oneJSONLine(t, mustRun(t, dir, "eval", "--run", "r", "--json").stdout)
	for _, k := range []string{"rmse", "mae", "r2", "loss"} {
		number(t, m, k)
	}
	if _, ok := m["accuracy"]; ok {
		t.Errorf("a regression eval reports accuracy: %v", m)
	}
	if sum.TestRMSE == nil || math.Abs(number(t, m, "rmse")-*sum.TestRMSE) > 1e-9 {
		t.Errorf("rmse %v, the run's summary says %v", m["rmse"], sum.TestRMSE)
	}
	r := mustRun(t, dir, "predict", "--run", "r", "--index", "0", "--json")
	var p prediction
	if err := json.Unmarshal([]byte(r.stdout), &p); err != nil || p.Prediction == nil || p.Target == nil || math.Abs(*p.Target) > 45 {
		t.Errorf("regression predict: %q (%v)", r.stdout, err)
	}
}

// digitImage returns test sample i of MNIST as the bytes it was read from.
func digitImage(t *testing.T, i int) *image.Gray {
	t.Helper()
	sp, err := data.Load("mnist", data.Options{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	d := sp.Test
	img := image.NewGray(image.Rect(0, 0, d.Width, d.Height))
	for j, v := range d.Image(i) {
		img.Pix[j] = uint8(math.Round((float64(v)*d.Std[0] + d.Mean[0]) * 255))
	}
	return img
}

func writePNG(t *testing.T, path string, img image.Image) {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func parsePredictions(t *testing.T, out string) []prediction {
	t.Helper()
	var ps []prediction
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var p prediction
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			t.Fatalf("%v in %q", err, l)
		}
		ps = append(ps, p)
	}
	return ps
}

func TestPredict(t *testing.T) {
	run := tinyRun(t)
	dir := t.TempDir()

	ps := parsePredictions(t, mustRun(t, dir, "predict", "--run", run, "--index", "0", "--count", "3", "--top", "3", "--json").stdout)
	if len(ps) != 3 {
		t.Fatalf("%d predictions for --count 3", len(ps))
	}
	for i, p := range ps {
		if p.Source != fmt.Sprintf("test[%d]", i) || p.Label == nil || p.Correct == nil || len(p.Top) != 3 {
			t.Fatalf("prediction %d: %+v", i, p)
		}
		sum := 0.0
		for j, c := range p.Top {
			sum += c.Prob
			if c.Prob < 0 || c.Prob > 1 || j > 0 && c.Prob > p.Top[j-1].Prob {
				t.Errorf("prediction %d: top classes not in decreasing probability: %+v", i, p.Top)
			}
		}
		if sum > 1+1e-9 {
			t.Errorf("prediction %d: top-3 probabilities sum to %v", i, sum)
		}
		if *p.Correct != (p.Top[0].Class == *p.Label) {
			t.Errorf("prediction %d: correct=%v with label %d and top class %d", i, *p.Correct, *p.Label, p.Top[0].Class)
		}
	}

	// Test digit 0 written as a PNG and as a PGM must give exactly what
	// --index 0 gave: same bytes, same normalisation.
	img := digitImage(t, 0)
	writePNG(t, filepath.Join(dir, "digit.png"), img)
	pgm := append([]byte("P5\n# test digit 0\n28 28\n255\n"), img.Pix...)
	if err := os.WriteFile(filepath.Join(dir, "digit.pgm"), pgm, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"digit.png", "digit.pgm"} {
		got := parsePredictions(t, mustRun(t, dir, "predict", "--run", run, "--image", name, "--json").stdout)
		if len(got) != 1 || got[0].Source != name || len(got[0].Top) != 3 {
			t.Fatalf("%s: %+v", name, got)
		}
		for j, c := range got[0].Top {
			want := ps[0].Top[j]
			if c.Class != want.Class || math.Abs(c.Prob-want.Prob) > 1e-6 {
				t.Errorf("%s: top %d is %+v, --index 0 gave %+v", name, j, c, want)
			}
		}
	}

	// A larger colour image is converted to 1×28×28.
	big := image.NewRGBA(image.Rect(0, 0, 56, 56))
	for y := 0; y < 56; y++ {
		for x := 0; x < 56; x++ {
			v := img.GrayAt(x/2, y/2).Y
			big.Set(x, y, color.RGBA{v, v, v, 255})
		}
	}
	writePNG(t, filepath.Join(dir, "big.png"), big)
	r := mustRun(t, dir, "predict", "--run", run, "--image", "big.png", "--top", "2")
	if !strings.HasPrefix(r.stdout, "big.png: ") || strings.Count(r.stdout, "%") != 2 {
		t.Errorf("readable predict: %q", r.stdout)
	}
}

func TestExport(t *testing.T) {
	run := tinyRun(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "models", "lenet.safetensors")
	mustRun(t, dir, "export", "--run", run, "--out", out)

	b, err := os.ReadFile(filepath.Join(dir, "models", "lenet.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sc sidecarFile
	if err := json.Unmarshal(b, &sc); err != nil {
		t.Fatal(err)
	}
	sum := readSummary(t, run)
	if sc.Model != "lenet" || sc.Params != sum.Params || sc.Task != "classification" || sc.Outputs != 10 || !slices.Equal(sc.Input, []int{1, 28, 28}) {
		t.Errorf("sidecar: model %q, params %d (run: %d), task %q, outputs %d, input %v", sc.Model, sc.Params, sum.Params, sc.Task, sc.Outputs, sc.Input)
	}
	if sc.Normalization == nil || !slices.Equal(sc.Normalization.Mean, []float64{0.1307}) || !slices.Equal(sc.Normalization.Std, []float64{0.3081}) || len(sc.Classes) != 10 {
		t.Errorf("sidecar: normalisation %+v, classes %v", sc.Normalization, sc.Classes)
	}

	tensors, meta, err := safetensors.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if meta["model"] != "lenet" || len(tensors) != len(sc.Tensors) {
		t.Errorf("weights: meta %v, %d tensors, sidecar lists %d", meta, len(tensors), len(sc.Tensors))
	}
	for _, st := range sc.Tensors {
		w, ok := tensors[st.Name]
		if !ok || w.DType() != engine.Float32 || !slices.Equal(w.Shape(), st.Shape) {
			t.Errorf("tensor %s %v: in the file %v", st.Name, st.Shape, w)
		}
	}
	if w := tensors["conv1.weight"]; w == nil || !slices.Equal(w.Shape(), []int{6, 1, 5, 5}) {
		t.Errorf("conv1.weight: %v", w)
	}

	// The exported file evaluates as the run's weights did.
	m := oneJSONLine(t, mustRun(t, dir, "eval", "--weights", out, "--subset", "0.01", "--json").stdout)
	if acc := number(t, m, "accuracy"); math.Abs(acc-*sum.TestAccuracy) > 1e-12 {
		t.Errorf("exported weights: accuracy %v, the run's %v", acc, *sum.TestAccuracy)
	}
	// --out FILE.onnx without --format is ONNX (a ModelProto starts with
	// field 1, ir_version: byte 0x08), not safetensors under that name.
	onnxOut := filepath.Join(dir, "models", "lenet.onnx")
	mustRun(t, dir, "export", "--run", run, "--out", onnxOut)
	if b, err := os.ReadFile(onnxOut); err != nil || len(b) == 0 || b[0] != 0x08 {
		t.Errorf("--out lenet.onnx: not an ONNX file (%v, first bytes %x)", err, b[:min(8, len(b))])
	}
}

// A stray argument is a usage error that says which flag takes what was
// likely meant, not cobra's "unknown command".
func TestStrayArgumentsNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ args, want string }{
		{"train cnn", `kiln train takes no arguments (got ["cnn"]): the model is --model`},
		{"plot runs/x", `kiln plot takes no arguments (got ["runs/x"]): the run directory is --run`},
		{"bench suite ops", `kiln bench suite takes no arguments (got ["ops"]): the sections are --sections`},
		{"info x", `kiln info takes no arguments (got ["x"])`},
	} {
		r := kiln(t, dir, strings.Fields(c.args)...)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) || strings.Contains(r.stderr, "unknown command") {
			t.Errorf("kiln %s: exit %d, %q; want 2 and %q", c.args, r.code, r.stderr, c.want)
		}
	}
}

// A command whose results cannot be written (stdout on a full disk) fails,
// rather than ending in success with the output lost.
func TestFullStdoutFails(t *testing.T) {
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full here: %v", err)
	}
	defer full.Close()
	for _, args := range [][]string{{"info", "--device", "cpu"}, {"summary", "--model", "lenet", "--json"}} {
		cmd := exec.Command(kilnBin, args...)
		var errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = full, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(errb.String(), "no space left on device") {
			t.Errorf("kiln %v > /dev/full: %v\n%s", args, err, errb.String())
		}
	}
}
