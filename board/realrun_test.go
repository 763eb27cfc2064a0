package board

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

// Real runs: a model trained for a few dozen steps on a slice of real MNIST
// through the trainer API, so that every file the board reads is what the
// trainer writes. Each is trained once per test binary and copied where a
// test needs its own.

var (
	realOnce sync.Map // model -> *realRun
	realBase string
	realMu   sync.Mutex
)

type realRun struct {
	once sync.Once
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if realBase != "" {
		os.RemoveAll(realBase)
	}
	os.Exit(code)
}

// trainedRun returns the directory of a finished real run of model.
func trainedRun(t *testing.T, model string) string {
	t.Helper()
	dir, err := trainRealRun(model)
	if err != nil {
		t.Fatalf("training a real %s run: %v", model, err)
	}
	return dir
}

// trainRealRun trains model once per test binary (any goroutine may call it).
func trainRealRun(model string) (string, error) {
	v, _ := realOnce.LoadOrStore(model, &realRun{})
	r := v.(*realRun)
	r.once.Do(func() {
		realMu.Lock()
		if realBase == "" {
			realBase, r.err = os.MkdirTemp("", "kiln-board-runs-")
		}
		base := realBase
		realMu.Unlock()
		if r.err != nil {
			return
		}
		r.dir = filepath.Join(base, model+"-mnist")
		r.err = trainRun(r.dir, model)
	})
	return r.dir, r.err
}

// trainRun trains model on 2% of MNIST (960 training, 240 validation and 200
// test images) for two epochs of 30 steps, validating every 10 steps; cbam,
// thirty times slower a step, on 0.5% for one epoch of 6 steps.
func trainRun(dir, model string) error {
	c := trainer.DefaultConfigFor(model, "mnist")
	c.Subset, c.ValFraction, c.Epochs, c.Batch, c.ValEvery, c.Schedule = 0.02, 0.2, 2, 32, 10, "cosine"
	switch model {
	case "gmlp":
		c.Hidden, c.Depth = 32, 1
	case "cbam":
		c.Subset, c.Epochs, c.ValEvery = 0.005, 1, 3
	}
	splits, err := data.Load("mnist", data.Options{Subset: c.Subset, ValFraction: c.ValFraction, Seed: c.Seed})
	if err != nil {
		return err
	}
	net, err := layers.Build(model, layers.Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Seed: c.Seed, Hidden: c.Hidden, Depth: c.Depth})
	if err != nil {
		return err
	}
	tr, err := trainer.NewTrainer(c, net)
	if err != nil {
		return err
	}
	run, err := trainer.OpenRunDir(dir, false)
	if err != nil {
		return err
	}
	defer run.Close()
	tr.Run = run
	if y, err := c.YAML(); err == nil {
		trainer.WriteFileAtomic(run.File(trainer.ConfigFile), y)
	}
	_, err = tr.Fit(context.Background(), splits)
	return err
}

// copyRun copies a run directory's files (not its subdirectories).
func copyRun(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(to, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(to, e.Name()), b)
	}
}

// The board serves a real run's files, and they parse as the trainer's own
// types: the board and the writer agree on the contract.
func TestBoardServesARealRun(t *testing.T) {
	logdir := t.TempDir()
	copyRun(t, trainedRun(t, "lenet"), filepath.Join(logdir, "lenet"))
	_, ts := newTestServer(t, logdir)

	_, body, _ := get(t, ts.URL+"/api/runs")
	var l Listing
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		t.Fatal(err)
	}
	if len(l.Runs) != 1 || l.Runs[0].ID != "lenet" {
		t.Fatalf("runs %+v", l.Runs)
	}
	for _, f := range []string{trainer.MetricsFile, trainer.SummaryFile, trainer.ConfigFile} {
		if _, ok := l.Runs[0].Files[f]; !ok {
			t.Errorf("listing lacks %s: %v", f, l.Runs[0].Files)
		}
	}

	code, body, _ := get(t, fileURL(ts, "lenet/metrics.jsonl"))
	if code != 200 {
		t.Fatalf("metrics.jsonl: %d", code)
	}
	splits := map[string]int{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		var m trainer.MetricsRecord
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("metrics line %q: %v", sc.Text(), err)
		}
		splits[m.Split]++
		if m.Split != "test" && (m.Step <= 0 || m.Loss <= 0 || m.Accuracy == nil) {
			t.Errorf("metrics line %q", sc.Text())
		}
	}
	// 2 epochs of 30 steps, validating every 10 steps and at each epoch end.
	if splits["train"] != 2 || splits["val"] < 6 || splits["test"] != 1 {
		t.Fatalf("metrics splits %v", splits)
	}

	if _, ok := l.Runs[0].Files[trainer.VisualsFile]; ok {
		_, body, _ = get(t, fileURL(ts, "lenet/visuals.json"))
		var v trainer.Visuals
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatal(err)
		}
		if len(v.Classes) != 10 || len(v.Confusion) != 10 || v.Filters == nil || len(v.Samples) == 0 {
			t.Fatalf("visuals.json: %d classes, %d confusion rows, filters %v, %d samples", len(v.Classes), len(v.Confusion), v.Filters != nil, len(v.Samples))
		}
	} else {
		t.Log("the trainer wrote no visuals.json")
	}
	if _, ok := l.Runs[0].Files[trainer.HistogramsFile]; ok {
		res, err := ts.Client().Get(fileURL(ts, "lenet/histograms.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		var h trainer.HistogramRecord
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &h); err != nil || len(h.Params) == 0 || len(h.Params[0].Edges) != len(h.Params[0].Counts)+1 {
			t.Fatalf("histograms.jsonl last line: %v %+v", err, h)
		}
	} else {
		t.Log("the trainer wrote no histograms.jsonl")
	}
}
