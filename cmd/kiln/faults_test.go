package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/internal/durable"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/tbevents"
)

// The fault-injection tests (issue 12): a short real training is killed
// (SIGKILL) at every change it makes to its run directory in turn, or meets
// a full disk at every write, and is then resumed; each resumed run must end
// exactly as the uninterrupted one did. They use a kiln built with
// -tags faultinject, whose internal/durable obeys KILN_FAULT.

var (
	faultOnce sync.Once
	faultBin  string
	faultErr  error
)

func faultKiln(t *testing.T) string {
	t.Helper()
	faultOnce.Do(func() {
		faultBin = filepath.Join(workDir, "kiln-faultinject")
		out, err := exec.Command(goTool(), "build", "-tags", "faultinject", "-o", faultBin, ".").CombinedOutput()
		if err != nil {
			faultErr = fmt.Errorf("building kiln -tags faultinject: %v\n%s", err, out)
		}
	})
	if faultErr != nil {
		t.Fatal(faultErr)
	}
	return faultBin
}

// faultCSV writes a small four-class problem as CSV: quick to load, so that
// the hundreds of runs stay within a minute or two.
func faultCSV(t *testing.T) string {
	t.Helper()
	var b bytes.Buffer
	b.WriteString("a,b,c,d,e,f,g,h,label\n")
	rng := rand.New(rand.NewPCG(7, 7))
	for i := 0; i < 240; i++ {
		k := rng.IntN(4)
		for j := 0; j < 8; j++ {
			v := rng.NormFloat64()
			if j/2 == k {
				v += 2
			}
			fmt.Fprintf(&b, "%.4f,", v)
		}
		fmt.Fprintf(&b, "%d\n", k)
	}
	path := filepath.Join(t.TempDir(), "train.csv")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// faultArgs is the run every fault test repeats: two epochs with
// validations inside them, early stopping on val_acc (best weights) and
// histograms, so that each kind of file is written.
func faultArgs(csv, dir string) []string {
	return []string{"train", "--dataset", "csv", "--data-dir", csv, "--model", "mlp", "--hidden", "16",
		"--epochs", "2", "--batch", "32", "--val-every", "2", "--early-stop", "val_acc", "--patience", "50",
		"--seed", "3", "--device", "cpu", "--threads", "1", "--run-dir", dir}
}

type faultRun struct {
	code   int
	killed bool
	stderr string
}

func runWithFault(t *testing.T, bin, fault string, args ...string) faultRun {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "KILN_FAULT="+fault)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	r := faultRun{stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.killed = ws.Signal() == syscall.SIGKILL
		}
	case err != nil:
		t.Fatalf("kiln %v: %v", args, err)
	}
	if strings.Contains(r.stderr, "panic:") || strings.Contains(r.stderr, "goroutine ") {
		t.Fatalf("kiln %s (KILN_FAULT=%s) panicked:\n%s", strings.Join(args, " "), fault, r.stderr)
	}
	return r
}

// mutations runs the fault-free reference, counting the changes it makes,
// and returns them ("N op path" lines).
func mutations(t *testing.T, bin, csv, dir string) []string {
	t.Helper()
	list := filepath.Join(t.TempDir(), "mutations")
	if r := runWithFault(t, bin, "count:"+list, faultArgs(csv, dir)...); r.code != 0 {
		t.Fatalf("reference run: exit %d\n%s", r.code, r.stderr)
	}
	b, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// TestKillAtEveryChangeAndResume kills the training just before each change
// it makes to its run directory (every create, write, fsync, rename, remove
// and truncate), resumes it, and checks that the result equals the
// uninterrupted run's.
func TestKillAtEveryChangeAndResume(t *testing.T) {
	bin, csv, muts, want := faultReference(t)
	forEachFault(t, len(muts), func(i int, dir string) string {
		r := runWithFault(t, bin, "kill:"+strconv.Itoa(i), faultArgs(csv, dir)...)
		if !r.killed {
			return fmt.Sprintf("not killed at change %d (%s): exit %d\n%s", i, muts[i-1], r.code, r.stderr)
		}
		return resumeAndCompare(t, csv, dir, want, muts[i-1])
	})
	t.Logf("killed and resumed at each of %d changes", len(muts))
}

// TestAppendedFilesAreSyncedBeforeTheCheckpoint: a power cut keeps a
// checkpoint (synced) but may lose unsynced appends, leaving metrics.jsonl
// shorter than the checkpoint says, its records before it lost. Every
// appended file written to must be synced before the next checkpoint, and
// before summary.json marks the run done.
func TestAppendedFilesAreSyncedBeforeTheCheckpoint(t *testing.T) {
	bin, csv := faultKiln(t), faultCSV(t)
	muts := mutations(t, bin, csv, filepath.Join(t.TempDir(), "run"))
	unsynced := map[string]bool{}
	commits := 0
	for _, m := range muts {
		f := strings.Fields(m)
		if len(f) < 3 {
			continue
		}
		op, name := f[1], filepath.Base(f[2])
		appended := name == trainer.MetricsFile || name == trainer.HistogramsFile || name == trainer.LogFile ||
			strings.HasPrefix(name, trainer.EventsPrefix)
		switch {
		case appended && op == durable.OpWrite:
			unsynced[name] = true
		case appended && op == durable.OpSync:
			delete(unsynced, name)
		case op == durable.OpRename && (name == trainer.CheckpointFile || name == trainer.SummaryFile):
			commits++
			if len(unsynced) > 0 {
				t.Fatalf("%s: %s written to but not synced before it:\n%s", m, strings.Join(slices.Sorted(maps.Keys(unsynced)), ", "), strings.Join(muts, "\n"))
			}
		}
	}
	if commits < 2 {
		t.Fatalf("%d checkpoints and summaries renamed into place, want several:\n%s", commits, strings.Join(muts, "\n"))
	}
}

// TestFullDiskAtEveryWriteAndResume fills the disk at each create and write
// in turn (every later one fails too, as on a full disk): the run must stop
// with a message that names the disk, keep its last checkpoint, and, once
// there is room again, resume to the uninterrupted run's result.
func TestFullDiskAtEveryWriteAndResume(t *testing.T) {
	bin, csv, muts, want := faultReference(t)
	writes := mutationsWhere(muts, func(op, _ string) bool { return op == durable.OpCreate || op == durable.OpWrite })
	forEachFault(t, len(writes), func(k int, dir string) string {
		i := writes[k-1]
		r := runWithFault(t, bin, "enospc:"+strconv.Itoa(i), faultArgs(csv, dir)...)
		if r.code == 0 || r.killed || !strings.Contains(r.stderr, "is full") || !strings.Contains(r.stderr, "no space left on device") ||
			!strings.Contains(r.stderr, "--resume") {
			return fmt.Sprintf("full disk at change %d (%s): exit %d, want a message naming the full disk:\n%s", i, muts[i-1], r.code, r.stderr)
		}
		return resumeAndCompare(t, csv, dir, want, muts[i-1])
	})
	t.Logf("a full disk at each of %d creates and writes, then resumed", len(writes))
}

// TestFullDiskFailingOneWriteStopsThere: a nearly full disk fails a large
// write (visuals.json, after a validation) and takes the small ones after
// it. The run must stop at that validation, with the message, not train on
// (its metrics.jsonl ends with that validation's record), and resume to the
// uninterrupted run's result.
func TestFullDiskFailingOneWriteStopsThere(t *testing.T) {
	bin, csv, muts, want := faultReference(t)
	visuals := mutationsWhere(muts, func(op, path string) bool {
		return op == durable.OpWrite && strings.Contains(path, trainer.VisualsFile)
	})
	if len(visuals) < 2 {
		t.Fatalf("the reference run wrote visuals.json %d times, want one a validation:\n%s", len(visuals), strings.Join(muts, "\n"))
	}
	forEachFault(t, len(visuals)-1, func(k int, dir string) string { // the last one comes after training
		i := visuals[k-1]
		r := runWithFault(t, bin, "enospc1:"+strconv.Itoa(i), faultArgs(csv, dir)...)
		if r.code == 0 || !strings.Contains(r.stderr, "is full") {
			return fmt.Sprintf("visuals.json's write %d failed: exit %d, want a stop naming the full disk:\n%s", i, r.code, r.stderr)
		}
		if last := lastRecord(t, filepath.Join(dir, trainer.MetricsFile)); !strings.Contains(last, `"split":"val"`) {
			return fmt.Sprintf("visuals.json's write %d failed and the run went on: metrics.jsonl ends with %s", i, last)
		}
		return resumeAndCompare(t, csv, dir, want, muts[i-1])
	})
}

// lastRecord is the last line of a metrics file.
func lastRecord(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// faultReference is the fault-injection kiln, the CSV its runs train on,
// the mutations of a run without faults and that run's outcome.
func faultReference(t *testing.T) (bin, csv string, muts []string, want outcome) {
	bin, csv = faultKiln(t), faultCSV(t)
	ref := filepath.Join(t.TempDir(), "reference")
	muts = mutations(t, bin, csv, ref)
	return bin, csv, muts, runOutcome(t, ref)
}

// mutationsWhere numbers (from 1) the mutations whose operation and path
// keep says to.
func mutationsWhere(muts []string, keep func(op, path string) bool) []int {
	var out []int
	for i, m := range muts {
		if f := strings.Fields(m); len(f) >= 3 && keep(f[1], f[2]) {
			out = append(out, i+1)
		}
	}
	return out
}

// forEachFault runs fault(i, a fresh run directory) for i in 1..n, two at a
// time, and reports every failure.
func forEachFault(t *testing.T, n int, fault func(i int, dir string) string) {
	t.Helper()
	base := t.TempDir()
	var mu sync.Mutex
	var failures []string
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if msg := fault(i, filepath.Join(base, strconv.Itoa(i))); msg != "" {
					mu.Lock()
					failures = append(failures, msg)
					mu.Unlock()
				}
			}
		}()
	}
	for i := 1; i <= n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d faults:\n%s", len(failures), n, strings.Join(failures[:min(len(failures), 5)], "\n---\n"))
	}
}

// outcome is what an interrupted and resumed run must reproduce.
type outcome struct {
	last, best []byte
	metrics    []string
	scalars    []string
	summary    string
}

func runOutcome(t *testing.T, dir string) outcome {
	t.Helper()
	var o outcome
	var err error
	if o.last, err = os.ReadFile(filepath.Join(dir, trainer.LastWeights)); err != nil {
		t.Fatal(err)
	}
	if o.best, err = os.ReadFile(filepath.Join(dir, trainer.BestWeights)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, trainer.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var r trainer.MetricsRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("%s: %q: %v", dir, line, err)
		}
		r.Time, r.Wall, r.ImagesPS = "", 0, 0 // timings differ
		m, _ := json.Marshal(r)
		o.metrics = append(o.metrics, string(m))
	}
	o.scalars = eventScalars(t, dir)
	var sum trainer.Summary
	b, err = os.ReadFile(filepath.Join(dir, trainer.SummaryFile))
	if err == nil {
		err = json.Unmarshal(b, &sum)
	}
	if err != nil {
		t.Fatalf("%s: summary: %v", dir, err)
	}
	sum.TrainImagesPerSec, sum.TrainSeconds = 0, 0
	s, _ := json.Marshal(sum)
	o.summary = string(s)
	return o
}

func eventScalars(t *testing.T, dir string) []string {
	files, _ := filepath.Glob(filepath.Join(dir, trainer.EventsPrefix+"*"))
	slices.Sort(files)
	var out []string
	for _, f := range files {
		events, err := tbevents.ReadFile(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, e := range events {
			for _, v := range e.Values {
				if v.HasScalar {
					out = append(out, fmt.Sprintf("%s@%d=%g", v.Tag, e.Step, v.Scalar))
				}
			}
		}
	}
	return out
}

// resumeAndCompare resumes the run in dir with the plain kiln and compares
// what it ends with to want; it returns what differs ("" when nothing).
func resumeAndCompare(t *testing.T, csv, dir string, want outcome, fault string) string {
	start := time.Now()
	r := runWithFault(t, kilnBin, "", append(faultArgs(csv, dir), "--resume")...)
	if r.code != 0 {
		return fmt.Sprintf("after %s: --resume exit %d\n%s", fault, r.code, r.stderr)
	}
	got := runOutcome(t, dir)
	var diffs []string
	if !bytes.Equal(got.last, want.last) {
		diffs = append(diffs, "last.safetensors differs")
	}
	if !bytes.Equal(got.best, want.best) {
		diffs = append(diffs, "best.safetensors differs")
	}
	if !slices.Equal(got.metrics, want.metrics) {
		diffs = append(diffs, fmt.Sprintf("metrics.jsonl differs:\n%s\nwant\n%s", strings.Join(got.metrics, "\n"), strings.Join(want.metrics, "\n")))
	}
	if !slices.Equal(got.scalars, want.scalars) {
		diffs = append(diffs, fmt.Sprintf("TensorBoard scalars differ:\n%v\nwant\n%v", got.scalars, want.scalars))
	}
	if got.summary != want.summary {
		diffs = append(diffs, fmt.Sprintf("summary.json differs:\n%s\nwant\n%s", got.summary, want.summary))
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if _, ok := durable.TempOf(e.Name()); ok {
			diffs = append(diffs, "temporary file left: "+e.Name())
		}
	}
	if len(diffs) == 0 {
		return ""
	}
	return fmt.Sprintf("after %s, resumed in %v:\n%s", fault, time.Since(start).Round(time.Millisecond), strings.Join(diffs, "\n"))
}
