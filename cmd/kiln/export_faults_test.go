package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/internal/durable"
)

// An export over another model's, killed (SIGKILL) or interrupted (Ctrl-C)
// just before each change it makes, leaves weights beside their own sidecar
// or beside none, never beside the other model's; Ctrl-C leaves no
// temporary file, and the next export removes those a kill left.
func TestExportKilledOrInterruptedAtEveryChange(t *testing.T) {
	bin, csv, dir := faultKiln(t), faultCSV(t), t.TempDir()
	for _, width := range []string{"16", "32"} {
		mustRun(t, dir, "train", "--dataset", "csv", "--data-dir", csv, "--model", "mlp", "--hidden", width, "--epochs", "1",
			"--no-visuals", "--run-dir", "w"+width)
	}
	out := filepath.Join(dir, "x", "m.safetensors")
	export := func(fault, run string) faultRun {
		return runWithFault(t, bin, fault, "export", "--run", filepath.Join(dir, run), "--out", out)
	}
	list := filepath.Join(dir, "mutations")
	if r := export("count:"+list, "w32"); r.code != 0 {
		t.Fatalf("export: exit %d\n%s", r.code, r.stderr)
	}
	b, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	muts := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := 1; i <= len(muts); i++ {
		for _, fault := range []string{"kill", "int"} {
			if r := export("", "w16"); r.code != 0 { // the old export, which also clears the last one's leftovers
				t.Fatalf("export: exit %d\n%s", r.code, r.stderr)
			}
			if temps := exportLeftovers(t, filepath.Dir(out)); len(temps) > 0 {
				t.Fatalf("after a %s at change %d (%s), the next export left %v", fault, i-1, muts[max(i-2, 0)], temps)
			}
			r := export(fault+":"+strconv.Itoa(i), "w32")
			switch {
			case fault == "kill" && !r.killed:
				t.Fatalf("not killed at change %d (%s): exit %d\n%s", i, muts[i-1], r.code, r.stderr)
			case fault == "int" && r.code != 130:
				t.Fatalf("Ctrl-C at change %d (%s): exit %d, want 130\n%s", i, muts[i-1], r.code, r.stderr)
			case fault == "int" && len(exportLeftovers(t, filepath.Dir(out))) > 0:
				t.Errorf("Ctrl-C at change %d (%s) left %v", i, muts[i-1], exportLeftovers(t, filepath.Dir(out)))
			}
			if msg := exportPairMismatch(t, out); msg != "" {
				t.Errorf("%s at change %d (%s): %s", fault, i, muts[i-1], msg)
			}
		}
		// A full disk at a change of the weights leaves the old export
		// whole, its sidecar too (it was removed for good).
		if f := strings.Fields(muts[i-1]); len(f) == 3 && f[2] == out && (f[1] == durable.OpCreate || f[1] == durable.OpWrite) {
			export("", "w16")
			if r := export("enospc1:"+strconv.Itoa(i), "w32"); r.code == 0 {
				t.Fatalf("a full disk at change %d (%s): exit 0", i, muts[i-1])
			}
			if _, err := os.Stat(sidecarPath(out)); err != nil {
				t.Errorf("a full disk at change %d (%s) left the old weights without their sidecar: %v", i, muts[i-1], err)
			}
			if msg := exportPairMismatch(t, out); msg != "" {
				t.Errorf("a full disk at change %d (%s): %s", i, muts[i-1], msg)
			}
		}
	}
}

// exportLeftovers are the temporary files in dir.
func exportLeftovers(t *testing.T, dir string) []string {
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var temps []string
	for _, e := range entries {
		if _, ok := durable.TempOf(e.Name()); ok {
			temps = append(temps, e.Name())
		}
	}
	return temps
}

// exportPairMismatch says how out's weights and sidecar describe different
// models ("" when they agree or the sidecar is missing).
func exportPairMismatch(t *testing.T, out string) string {
	side, err := os.ReadFile(sidecarPath(out))
	if os.IsNotExist(err) {
		return ""
	}
	var sc struct{ Spec struct{ Hidden int } }
	if err == nil {
		err = json.Unmarshal(side, &sc)
	}
	if err != nil {
		return fmt.Sprintf("sidecar: %v", err)
	}
	w, err := os.ReadFile(out)
	if err != nil || len(w) < 8 {
		return fmt.Sprintf("weights: %v (%d bytes) beside a sidecar", err, len(w))
	}
	n := binary.LittleEndian.Uint64(w)
	var head struct {
		Meta struct{ Spec string } `json:"__metadata__"`
	}
	var spec struct{ Hidden int }
	if n > uint64(len(w)-8) || json.Unmarshal(w[8:8+n], &head) != nil || json.Unmarshal([]byte(head.Meta.Spec), &spec) != nil {
		return "weights: an unreadable header"
	}
	if spec.Hidden != sc.Spec.Hidden {
		return fmt.Sprintf("weights of width %d beside a sidecar of width %d", spec.Hidden, sc.Spec.Hidden)
	}
	return ""
}

// kiln export refuses an --out, or a sidecar, that is one of a run
// directory's own files (model.safetensors's sidecar is model.json: the run
// lost its normalisation) or a directory, before writing anything.
func TestExportRefusesTheRunsOwnFiles(t *testing.T) {
	run := tinyRun(t)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "x.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A link to a run's weights is one of its files too (it was written
	// through, the run's last.safetensors replaced by another model's).
	if err := os.Symlink(filepath.Join(run, "last.safetensors"), filepath.Join(dir, "mine.safetensors")); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(run, "model.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ out, format, want string }{
		{filepath.Join(run, "model.safetensors"), "safetensors", "is the run directory's own model.json"},
		{filepath.Join(run, "summary.json"), "onnx", "is the run directory's own summary.json"},
		{filepath.Join(dir, "x.safetensors"), "safetensors", "x.json is a directory"},
		{filepath.Join(dir, "mine.safetensors"), "safetensors", "a run directory's own last.safetensors"},
	} {
		r := kiln(t, dir, "export", "--run", run, "--format", c.format, "--out", c.out)
		if r.code != 2 || !strings.Contains(r.stderr, c.want) {
			t.Errorf("export --out %s: exit %d, want 2 and %q\n%s", c.out, r.code, c.want, r.stderr)
		}
	}
	if after, _ := os.ReadFile(filepath.Join(run, "model.json")); string(after) != string(before) {
		t.Error("the run's model.json changed")
	}
	if _, err := os.Stat(filepath.Join(dir, "x.safetensors")); !os.IsNotExist(err) {
		t.Errorf("weights written beside a sidecar that could not be: %v", err)
	}
	mustRun(t, dir, "export", "--run", run, "--out", filepath.Join(dir, "model.safetensors")) // model.json is no run file here
}
