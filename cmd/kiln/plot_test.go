package main

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPlot(t *testing.T) {
	dir := tinyRun(t)
	r := mustRun(t, workDir, "plot", "--run", dir)
	for _, name := range []string{"loss.png", "accuracy.png", "lr.png", "filters.png", "samples.png", "confusion.png", "histograms.png"} {
		path := filepath.Join(dir, "plots", name)
		if !strings.Contains(r.stdout, "wrote "+path) {
			t.Errorf("stdout does not say it wrote %s:\n%s", path, r.stdout)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(f)
		f.Close()
		if err != nil || cfg.Width < 100 || cfg.Height < 50 {
			t.Errorf("%s: %v, %dx%d", name, err, cfg.Width, cfg.Height)
		}
	}
	// LeNet has neither CBAM nor gMLP: those pictures are not drawn.
	if strings.Contains(r.stdout, "attention.png") || strings.Contains(r.stdout, "sgu.png") {
		t.Errorf("LeNet run drew attention or SGU pictures:\n%s", r.stdout)
	}

	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"plot"}, 2, "--run DIR is required"},
		{[]string{"plot", "--run", filepath.Join(workDir, "no-such-run")}, 2, "no such directory"},
		{[]string{"plot", "--run", filepath.Join(dir, "metrics.jsonl")}, 2, "is a file, not a directory"},
		{[]string{"plot", "--run", t.TempDir()}, 1, "not a run directory"},
	} {
		r := kiln(t, workDir, c.args...)
		if r.code != c.code || !strings.Contains(strings.Join(errorLines(r.stderr), "\n"), c.msg) {
			t.Errorf("kiln %s: exit %d, %q; want exit %d and %q", strings.Join(c.args, " "), r.code, r.stderr, c.code, c.msg)
		}
	}
}

// A run with bad lines in metrics.jsonl is drawn from its good ones, and
// kiln plot says which lines it skipped.
func TestPlotSkipsBadRecords(t *testing.T) {
	src := tinyRun(t)
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(src, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	bad := append([]string{lines[0], "null\n", "{\"step\": garbage\n"}, lines[1:]...)
	if err := os.WriteFile(filepath.Join(dir, "metrics.jsonl"), []byte(strings.Join(bad, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, workDir, "plot", "--run", dir)
	if !strings.Contains(r.stdout, "metrics.jsonl: skipped 2 bad records (lines 2, 3)") || !strings.Contains(r.stdout, "wrote "+filepath.Join(dir, "plots", "loss.png")) {
		t.Errorf("kiln plot of a run with two bad lines:\n%s", r.stdout)
	}
}

// TestPlotOnAFullDiskFails: pictures that cannot be written (the disk fills
// at the third change, through the faultinject build) make kiln plot exit
// non-zero, saying which and why, and leave no partial file; the pictures
// written before stay whole.
func TestPlotOnAFullDiskFails(t *testing.T) {
	src, dir := tinyRun(t), filepath.Join(t.TempDir(), "run")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"metrics.jsonl", "visuals.json", "histograms.jsonl"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, name), b, 0o644)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	r := runWithFault(t, faultKiln(t), "enospc:3", "plot", "--run", dir)
	if r.code != 1 || !strings.Contains(r.stderr, "of the pictures could not be written") {
		t.Fatalf("exit %d, want 1 and a message that pictures could not be written:\n%s", r.code, r.stderr)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "plots"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 || len(entries) > 2 {
		t.Errorf("%d files in plots/, want the one or two written before the disk filled", len(entries))
	}
	for _, e := range entries {
		f, err := os.Open(filepath.Join(dir, "plots", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		_, err = png.DecodeConfig(f)
		f.Close()
		if err != nil || strings.HasPrefix(e.Name(), ".") {
			t.Errorf("plots/%s: %v (a partial or temporary file left behind)", e.Name(), err)
		}
	}
}
