package board

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
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

// The real runs the tests use, by name: model and data set.
var realRuns = map[string][2]string{
	"lenet-mnist":          {"lenet", "mnist"},
	"gmlp-mnist":           {"gmlp", "mnist"},
	"cbam-mnist":           {"cbam", "mnist"},
	"lenet-mnist-rotation": {"lenet", "mnist-rotation"},
}

// trainedRun returns the directory of a finished real run.
func trainedRun(t *testing.T, name string) string {
	t.Helper()
	dir, err := trainRealRun(name)
	if err != nil {
		t.Fatalf("training the real run %s: %v", name, err)
	}
	return dir
}

// trainRealRun trains a run once per test binary (any goroutine may call it).
func trainRealRun(name string) (string, error) {
	v, _ := realOnce.LoadOrStore(name, &realRun{})
	r := v.(*realRun)
	r.once.Do(func() {
		md, ok := realRuns[name]
		if !ok {
			r.err = errors.New("no such real run")
			return
		}
		realMu.Lock()
		if realBase == "" {
			realBase, r.err = os.MkdirTemp("", "kiln-board-runs-")
		}
		base := realBase
		realMu.Unlock()
		if r.err != nil {
			return
		}
		r.dir = filepath.Join(base, name)
		r.err = trainRun(r.dir, md[0], md[1])
	})
	return r.dir, r.err
}

// splits loads 2% of a data set (960 training, 240 validation and 200 test
// images) once per test binary: decoding all of MNIST is most of a real
// run's cost under the race detector.
var splitCache sync.Map // dataset -> func() (*data.Splits, error)

func splits(dataset string) (*data.Splits, error) {
	v, _ := splitCache.LoadOrStore(dataset, sync.OnceValues(func() (*data.Splits, error) {
		return data.Load(dataset, data.Options{Subset: 0.02, ValFraction: 0.2, Seed: 1})
	}))
	return v.(func() (*data.Splits, error))()
}

// first keeps the first n samples of d.
func first(d *data.Dataset, n int) (*data.Dataset, error) {
	idx := make([]int, min(n, d.Len()))
	for i := range idx {
		idx[i] = i
	}
	return d.Select(idx)
}

// trainRun trains model for two epochs of 30 steps, validating every 10
// steps; cbam, thirty times slower a step, for one epoch of 6 steps on 192
// images, validating on 48 at its end, with no test set.
func trainRun(dir, model, dataset string) error {
	c := trainer.DefaultConfigFor(model, dataset)
	c.Subset, c.ValFraction, c.Epochs, c.Batch, c.ValEvery, c.Schedule = 0.02, 0.2, 2, 32, 10, "cosine"
	c.Regression = dataset == "mnist-rotation"
	if model == "lenet" && !c.Regression {
		c.LogEvery = 5 // train_step records, which the page draws under the epoch means
	}
	s, err := splits(dataset)
	if err != nil {
		return err
	}
	switch model {
	case "gmlp":
		c.Hidden, c.Depth = 32, 1
	case "cbam":
		c.Epochs, c.ValEvery = 1, 0
		small := &data.Splits{}
		if small.Train, err = first(s.Train, 192); err != nil {
			return err
		}
		if small.Val, err = first(s.Val, 48); err != nil {
			return err
		}
		s = small
	}
	tr0 := s.Train
	net, err := layers.Build(model, layers.Spec{Channels: tr0.Channels, Height: tr0.Height, Width: tr0.Width, Classes: tr0.NumClasses(),
		Regression: c.Regression, Seed: c.Seed, Hidden: c.Hidden, Depth: c.Depth})
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
	_, err = tr.Fit(context.Background(), s)
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
	copyRun(t, trainedRun(t, "lenet-mnist"), filepath.Join(logdir, "lenet"))
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
