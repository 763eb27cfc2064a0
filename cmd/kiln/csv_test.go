package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --csv-target and --csv-task choose a CSV file's target column and task,
// which the guess got wrong: a first-column target, and 40 integer-coded
// classes that the guess takes for a regression. kiln eval of the run reads
// the file as training did.
func TestCSVTargetAndTask(t *testing.T) {
	dir := t.TempDir()
	var first, many strings.Builder
	first.WriteString("y,a,b\n")
	many.WriteString("f,g,category\n")
	for i := range 400 {
		a := float64(i%17)/8 - 1
		fmt.Fprintf(&first, "%d,%g,%g\n", map[bool]int{true: 1}[a > 0], a, float64(i%5))
		fmt.Fprintf(&many, "%d,%g,%d\n", i%40, float64(i%7), i%40)
	}
	for name, body := range map[string]string{"first.csv": first.String(), "many.csv": many.String()} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	args := func(file, run string) []string {
		return []string{"train", "--dataset", "csv", "--data-dir", filepath.Join(dir, file), "--model", "mlp", "--epochs", "1",
			"--device", "cpu", "--no-visuals", "--run-dir", filepath.Join(dir, run)}
	}
	if r := mustRun(t, dir, append(args("first.csv", "first"), "--csv-target", "y")...); !strings.Contains(r.stdout, "test accuracy") {
		t.Errorf("--csv-target y: %s", r.stdout)
	}
	if r := mustRun(t, dir, "eval", "--run", filepath.Join(dir, "first"), "--device", "cpu"); !strings.Contains(r.stdout, "accuracy") {
		t.Errorf("kiln eval of the --csv-target run: %s", r.stdout)
	}
	if r := mustRun(t, dir, args("many.csv", "guess")...); !strings.Contains(r.stdout, "RMSE") {
		t.Errorf("40 integer classes by the guess: %s, want the guess's regression", r.stdout)
	}
	if r := mustRun(t, dir, append(args("many.csv", "classes"), "--csv-task", "classification")...); !strings.Contains(r.stdout, "test accuracy") {
		t.Errorf("--csv-task classification: %s", r.stdout)
	}
	// predict --index and export read the file with the run's column and
	// task too: they took the last column and the guess (b's 5 values as
	// classes; a regression that refused the 40-class head).
	if r := mustRun(t, dir, "predict", "--run", filepath.Join(dir, "first"), "--index", "0", "--device", "cpu"); !strings.Contains(r.stdout, "(true ") {
		t.Errorf("predict --index of the --csv-target run: %s", r.stdout)
	}
	mustRun(t, dir, "predict", "--run", filepath.Join(dir, "classes"), "--index", "0", "--device", "cpu")
	mustRun(t, dir, "export", "--run", filepath.Join(dir, "classes"), "--format", "onnx", "--out", filepath.Join(dir, "classes.onnx"))
}

// A CSV run's visuals.json has no samples: a table's row drawn as a 1×1
// "picture" was a colour swatch (three features) or the first feature alone.
func TestCSVRunHasNoSamplePictures(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("a,b,c,y\n")
	for i := range 300 {
		fmt.Fprintf(&b, "%g,%g,%g,%d\n", float64(i%7)/7, float64(i%5)/5, float64(i%3)/3, i%2)
	}
	if err := os.WriteFile(filepath.Join(dir, "t.csv"), []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(dir, "run")
	mustRun(t, dir, "train", "--dataset", "csv", "--data-dir", filepath.Join(dir, "t.csv"), "--model", "mlp", "--epochs", "1",
		"--device", "cpu", "--threads", "1", "--run-dir", run)
	raw, err := os.ReadFile(filepath.Join(run, "visuals.json"))
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Samples   []json.RawMessage `json:"samples"`
		Confusion [][]int           `json:"confusion"`
	}
	if err := json.Unmarshal(raw, &v); err != nil || len(v.Samples) != 0 || len(v.Confusion) != 2 {
		t.Errorf("visuals.json of a CSV run: %v, %d samples (want none), confusion %v", err, len(v.Samples), v.Confusion)
	}
}

// A CSV run's eval, predict and export keep the scales it trained on
// (model.json's) after its training file changed: export wrote the target's
// scale and shift of whatever rows the file then held (every prediction
// from the exported model 40× off), and eval and predict standardised
// features and target with the new rows' statistics.
func TestCSVRunKeepsItsScalesWhenTheFileChanges(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	rows := func(n, k int) string {
		var b strings.Builder
		for i := range n {
			x := float64((i*k)%23) / 4
			fmt.Fprintf(&b, "%g,%g,%g\n", x, float64(i%3), 900.5+12.1*x)
		}
		return b.String()
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(data, name), []byte("a,b,y\n"+body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("train.csv", rows(200, 7))
	write("test.csv", rows(40, 5))
	run := filepath.Join(dir, "run")
	mustRun(t, dir, "train", "--dataset", "csv", "--data-dir", data, "--model", "mlp", "--epochs", "1", "--device", "cpu",
		"--no-visuals", "--run-dir", run)
	figures := func() (evalLine, predictLine string, sidecar []byte) {
		evalLine = mustRun(t, dir, "eval", "--run", run, "--json", "--device", "cpu").stdout
		predictLine = mustRun(t, dir, "predict", "--run", run, "--index", "3", "--json", "--device", "cpu").stdout
		mustRun(t, dir, "export", "--run", run, "--out", filepath.Join(dir, "m.safetensors"))
		sidecar, err := os.ReadFile(filepath.Join(dir, "m.json"))
		if err != nil {
			t.Fatal(err)
		}
		return evalLine, predictLine, sidecar
	}
	e0, p0, s0 := figures()
	if want := *readSummary(t, run).TestLoss; number(t, oneJSONLine(t, e0), "loss") != want {
		t.Fatalf("eval loss %s, the run's test loss %v", e0, want)
	}
	write("train.csv", rows(200, 7)+strings.ReplaceAll(rows(100, 3), ",9", ",-9")) // other means, spreads, targets
	e1, p1, s1 := figures()
	// Re-standardised in float32, the figures move in their last bits only.
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-5*math.Abs(b) }
	for _, key := range []string{"loss", "rmse", "r2"} {
		if a, b := number(t, oneJSONLine(t, e1), key), number(t, oneJSONLine(t, e0), key); !near(a, b) {
			t.Errorf("eval after the training file changed: %s %v, was %v", key, a, b)
		}
	}
	for _, key := range []string{"prediction", "target"} {
		if a, b := number(t, oneJSONLine(t, p1), key), number(t, oneJSONLine(t, p0), key); !near(a, b) {
			t.Errorf("predict --index 3 after the training file changed: %s %v, was %v", key, a, b)
		}
	}
	if string(s1) != string(s0) {
		t.Errorf("export's sidecar after the training file changed:\n%s\nwas\n%s", s1, s0)
	}
}

// --csv-header yes reads a first row of numbers as the names it is (it was
// a sample, its target "species" a class); config.yaml keeps it, so eval
// reads the file so too; a bad value is refused by name.
func TestCSVHeaderFlag(t *testing.T) {
	dir := t.TempDir()
	file := writeCSVRows(t, filepath.Join(dir, "h.csv"), "400,500,species", 60, func(i int) string {
		return fmt.Sprintf("%d.1,%d.2,%s", i%7, i%5, []string{"setosa", "virginica"}[i%2])
	})
	run := filepath.Join(dir, "run")
	mustRun(t, dir, "train", "--dataset", "csv", "--data-dir", file, "--csv-header", "yes", "--model", "mlp", "--epochs", "1",
		"--device", "cpu", "--no-visuals", "--run-dir", run)
	var info struct{ Classes []string }
	if b, err := os.ReadFile(filepath.Join(run, "model.json")); err != nil || json.Unmarshal(b, &info) != nil || strings.Join(info.Classes, ",") != "setosa,virginica" {
		t.Errorf("--csv-header yes: classes %v (%v)", info.Classes, err)
	}
	mustRun(t, dir, "eval", "--run", run, "--device", "cpu")
	if r := kiln(t, dir, "train", "--dataset", "csv", "--data-dir", file, "--csv-header", "maybe", "--run-dir", filepath.Join(dir, "bad")); r.code != 2 || !strings.Contains(r.stderr, "--csv-header") {
		t.Errorf("--csv-header maybe: exit %d\n%s", r.code, r.stderr)
	}
}

// A CSV class whose only rows the seed held out for the test trains with a
// warning naming it (its output is never trained), in train.log too.
func TestCSVClassWithoutTrainingRowsIsNamed(t *testing.T) {
	dir := t.TempDir()
	file := writeCSVRows(t, filepath.Join(dir, "rare.csv"), "a,b,label", 41, func(i int) string {
		if i == 40 {
			return "9,9,zebra"
		}
		return fmt.Sprintf("%d,%d,%s", i%7, i%3, []string{"ant", "bee"}[i%2])
	})
	warned := 0
	for seed := range 12 {
		run := filepath.Join(dir, fmt.Sprint("run", seed))
		r := mustRun(t, dir, "train", "--dataset", "csv", "--data-dir", file, "--model", "mlp", "--epochs", "1", "--seed", fmt.Sprint(seed),
			"--device", "cpu", "--no-visuals", "--run-dir", run)
		if strings.Contains(r.stderr, `("zebra") has no training sample`) {
			warned++
			if log, _ := os.ReadFile(filepath.Join(run, "train.log")); !strings.Contains(string(log), "no training sample") {
				t.Errorf("seed %d: the warning is not in train.log", seed)
			}
		}
	}
	if warned == 0 || warned == 12 {
		t.Errorf("zebra held out by %d of 12 seeds, warned so; want some but not all", warned)
	}
}

// writeCSVRows writes a CSV file at path: the header, then row(i) for i in
// [0, n), and returns path.
func writeCSVRows(t *testing.T, path, header string, n int, row func(i int) string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString(header + "\n")
	for i := range n {
		b.WriteString(row(i) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
