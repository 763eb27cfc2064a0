package trainer

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/kiln-ml/kiln/layers"
)

// The run directory is a contract other tools rely on:
//
//	metrics.jsonl     one JSON object per validation and per epoch
//	train.log         the JSON log lines
//	config.yaml       the resolved configuration
//	last.safetensors  weights at the end; best.safetensors the best by the monitored metric
//	checkpoint.safetensors  the resumable state
//	summary.json      the outcome (test figures, epochs, stop reason, speed)
//	histograms.jsonl  weight and gradient histograms, one line per validation
//	visuals.json      the latest pictures: filters, samples, confusion, attention
//	events.out.tfevents.<unix>.<hostname>  TensorBoard's event file
//	plots/            PNG files written by `kiln plot`
//
// Files are replaced atomically (temporary file, fsync, rename), so a kill at
// any moment leaves the previous version whole; train.log, histograms.jsonl
// and the event file are appended (a reader skips a last line that has no
// newline yet, or a last record cut short).
//
// histograms.jsonl (visuals.go), one line per validation (per epoch when
// there is no validation set), for every trainable parameter, its values
// (kind "weight") and its last step's gradient (kind "grad"):
//
//	{"step":N,"epoch":E,"params":[{"name":"conv1.weight","kind":"weight",
//	  "min":x,"max":x,"edges":[31 floats],"counts":[30 ints]}, …]}
//
// edges are equally spaced from min to max (widened slightly around a
// constant); counts[i] counts values in [edges[i], edges[i+1]), the last
// bucket closed; counts sum to the parameter's size (NaN/Inf left out).
// A resumed run drops the lines past its checkpoint's step.
//
// visuals.json, rewritten at each validation and at the end (the final
// weights, on the validation set, else the test set):
//
//	{"step":N,
//	 "classes":["0",…],                      classification only
//	 "filters":{"name":"conv1.weight","shape":[o,i,kh,kw],"data":[…]},
//	     the first 4-D parameter (the first convolution), o ≤ 64, PyTorch layout
//	 "samples":[{"index":i,"label":l,"pred":p,"prob":x,"shape":[c,h,w],"pixels":[…]}],
//	     up to 64 validation images, misclassified first, then in data set
//	     order; index is the position in the validation set; prob is the
//	     softmax probability of pred; pixels un-normalised to [0,1], (c,h,w)
//	     order. Regression: {"index","target","pred","shape","pixels"} in the
//	     target's unit, the 32 largest errors first (worst first), then in order.
//	 "confusion":[[…]],                      validation counts, rows = true class
//	 "attention":[{"layer":"cbam1.spatial","kind":"cbam_spatial","sample":i,
//	     "shape":[h,w],"data":[…]}],          CBAM spatial maps in (0,1) of the
//	     first 8 samples (sample = their index), when the model has CBAM
//	 "sgu":[{"layer":"blocks.0.sgu","shape":[T,T],"data":[…]}]}
//	     each gMLP spatial gating unit's token-mixing weights, when present
//
// Arrays of data hold 4 significant digits (null for NaN/Inf); optional keys
// are left out when empty. The event file holds the scalars train/loss,
// train/accuracy, val/loss, val/accuracy (val/rmse for regression), test/…,
// lr, and the histograms weight/<name> and grad/<name> at each validation;
// it is flushed after each validation so a live TensorBoard sees it.
// Config.NoVisuals (--no-visuals) leaves out the histograms and visuals.json.
const (
	MetricsFile    = "metrics.jsonl"
	LogFile        = "train.log"
	ConfigFile     = "config.yaml"
	LastWeights    = "last.safetensors"
	BestWeights    = "best.safetensors"
	CheckpointFile = "checkpoint.safetensors"
	SummaryFile    = "summary.json"
	HistogramsFile = "histograms.jsonl"
	VisualsFile    = "visuals.json"
	EventsPrefix   = "events.out.tfevents."
	PlotsDir       = "plots"
)

// MetricsRecord is one line of metrics.jsonl.
type MetricsRecord struct {
	Time     string   `json:"time"`
	Step     int      `json:"step"`
	Epoch    float64  `json:"epoch"` // fractional within an epoch
	Split    string   `json:"split"` // train, val or test
	Loss     float64  `json:"loss"`
	Accuracy *float64 `json:"accuracy,omitempty"`
	Top5     *float64 `json:"top5,omitempty"`
	RMSE     *float64 `json:"rmse,omitempty"`
	MAE      *float64 `json:"mae,omitempty"`
	R2       *float64 `json:"r2,omitempty"`
	LR       float64  `json:"lr"`
	Wall     float64  `json:"wall_seconds"`
	ImagesPS float64  `json:"images_per_sec,omitempty"`
}

// RunDir writes a run's files.
type RunDir struct {
	Path    string
	mu      sync.Mutex
	metrics []byte // every line so far, rewritten atomically on each record
	logFile *os.File
}

// OpenRunDir creates dir (or, with resume, reopens it). A directory that
// already holds a run is refused unless resuming, so nothing is overwritten.
func OpenRunDir(dir string, resume bool) (*RunDir, error) {
	_, err := os.Stat(filepath.Join(dir, CheckpointFile))
	exists := err == nil
	switch {
	case resume && !exists:
		return nil, fmt.Errorf("--resume: %s holds no checkpoint to resume", dir)
	case !resume && exists:
		return nil, fmt.Errorf("%s already holds a run: pass --resume to continue it, or choose another --run-dir", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	r := &RunDir{Path: dir}
	if resume {
		if b, err := os.ReadFile(filepath.Join(dir, MetricsFile)); err == nil {
			r.metrics = b
		}
	}
	r.logFile, err = os.OpenFile(filepath.Join(dir, LogFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	return r, nil
}

// Logger returns a logger writing JSON lines to train.log and, when console
// is not nil, human-readable lines there too.
func (r *RunDir) Logger(console io.Writer) zerolog.Logger {
	var w io.Writer = r.logFile
	if console != nil {
		w = zerolog.MultiLevelWriter(r.logFile, zerolog.ConsoleWriter{Out: console, TimeFormat: "15:04:05"})
	}
	return zerolog.New(w).With().Timestamp().Logger()
}

// Record appends one line to metrics.jsonl.
func (r *RunDir) Record(m MetricsRecord) error {
	if m.Time == "" {
		m.Time = time.Now().UTC().Format(time.RFC3339Nano)
	}
	line, err := json.Marshal(m)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.metrics = append(append(r.metrics, line...), '\n')
	return WriteFileAtomic(filepath.Join(r.Path, MetricsFile), r.metrics)
}

// WriteJSON writes v as indented JSON to name, atomically.
func (r *RunDir) WriteJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(r.Path, name), append(b, '\n'))
}

// File returns the path of a file in the run directory.
func (r *RunDir) File(name string) string { return filepath.Join(r.Path, name) }

// Close closes the log.
func (r *RunDir) Close() error { return r.logFile.Close() }

// WriteFileAtomic replaces path with data: a temporary file in the same
// directory, fsync, rename, fsync of the directory.
func WriteFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// ModelJSON describes an architecture so that weights can be rebuilt into the
// right model: a run's model.json and the sidecar of exported weights.
func ModelJSON(model string, s layers.Spec) []byte {
	b, _ := json.MarshalIndent(struct {
		Model string      `json:"model"`
		Spec  layers.Spec `json:"spec"`
	}{model, s}, "", "  ")
	return append(b, '\n')
}
