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
)

// The run directory is a contract other tools rely on:
//
//	metrics.jsonl     one JSON object per validation and per epoch
//	train.log         the JSON log lines
//	config.yaml       the resolved configuration
//	last.safetensors  weights at the end; best.safetensors the best by the monitored metric
//	checkpoint.safetensors  the resumable state
//	summary.json      the outcome (test figures, epochs, stop reason, speed)
//
// Files are replaced atomically (temporary file, fsync, rename), so a kill at
// any moment leaves the previous version whole; train.log is appended.
const (
	MetricsFile    = "metrics.jsonl"
	LogFile        = "train.log"
	ConfigFile     = "config.yaml"
	LastWeights    = "last.safetensors"
	BestWeights    = "best.safetensors"
	CheckpointFile = "checkpoint.safetensors"
	SummaryFile    = "summary.json"
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
