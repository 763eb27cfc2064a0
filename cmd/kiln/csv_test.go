package main

import (
	"encoding/json"
	"fmt"
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
