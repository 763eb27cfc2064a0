package trainer

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/kiln-ml/kiln/internal/durable"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer/data"
)

// The run directory is a contract other tools rely on:
//
//	metrics.jsonl     one JSON object per validation and per epoch
//	train.log         the JSON log lines
//	config.yaml       the resolved configuration
//	last.safetensors  weights at the end; best.safetensors the best by the monitored metric
//	checkpoint.safetensors  the resumable state
//	model.json        the architecture, to rebuild the model from weights
//	summary.json      the outcome (test figures, epochs, stop reason, speed);
//	                  written last, so its presence says the run has finished
//	kiln.lock         the lock of the one process that owns the run (its pid
//	                  inside); its presence marks a directory as Kiln's
//	histograms.jsonl  weight and gradient histograms, one line per validation
//	visuals.json      the latest pictures: filters, samples, confusion, attention
//	events.out.tfevents.<unix>.<hostname>  TensorBoard's event file
//	plots/            PNG files written by `kiln plot`
//
// Files are replaced atomically (temporary file, fsync, rename), so a kill at
// any moment leaves the previous version whole; train.log, metrics.jsonl,
// histograms.jsonl and the event file are appended (a reader skips a last line that has no
// newline yet, or a last record cut short). Every change goes through
// internal/durable, where the fault-injection tests kill the process or fill
// the disk at each change in turn.
//
// A checkpoint records the size of each appended file (metrics.jsonl
// included) when it was written; a resumed run cuts them back to those sizes
// and removes event files made after it, so a run killed at any moment and
// resumed holds exactly the records of one that was never interrupted.
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
	ModelFile      = "model.json"
	LockFile       = "kiln.lock"
	SummaryFile    = "summary.json"
	HistogramsFile = "histograms.jsonl"
	VisualsFile    = "visuals.json"
	EventsPrefix   = "events.out.tfevents."
	PlotsDir       = "plots"
	// TuneFile is a kiln tune directory's state (tune.StateFile): a run is
	// never opened in one, nor a tune started in a run's.
	TuneFile = "tune.json"
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

// RunDir writes a run's files. One process owns a run directory at a time
// (kiln.lock, flock), from OpenRunDir to Close.
type RunDir struct {
	// Path is the folder, a symbolic link to it resolved once, at OpenRunDir.
	Path string

	mu      sync.Mutex
	metrics []byte // metrics.jsonl as a resume found it, until cut back to its checkpoint
	// metricsSize is metrics.jsonl's size, its lines whole: appended to, a
	// line at a time (rewriting it whole at each record made a long run's
	// writes grow with the square of its records).
	metricsSize int64
	log         *durable.File
	lock        *os.File
	err         error     // the first write that failed; the run stops on it
	state       *RunState // the checkpoint's, when resuming
	finished    bool
	restart     bool
	short       []string // appended files a resume found shorter than their checkpoint said
	ended       bool     // a Fit in this process ended the run (wrote summary.json)
}

// OpenRunDir opens dir for a run, creating it when needed, and locks it
// against other processes. Without resume, a directory that already holds a
// checkpoint is refused, so nothing is overwritten; with resume it is cut
// back to its checkpoint (see the top of this file). A directory where an
// earlier run was killed before its first checkpoint starts over. A file
// that Kiln would write, already there but not written by a Kiln run, is
// refused by name.
func OpenRunDir(dir string, resume bool) (*RunDir, error) {
	if _, err := os.Stat(dir); resume && errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("--resume: %s does not exist: no run to resume", dir) // and none is made
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	// Through a symbolic link, the folder it names now, once: a link moved
	// during the run (a script's runs/latest) sent the rest of its files,
	// unlocked, into another run's folder.
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	if _, err := os.Stat(filepath.Join(dir, TuneFile)); err == nil {
		return nil, fmt.Errorf("%s holds a kiln tune (%s), not a training run: kiln tune --run-dir %s --resume continues it; "+
			"train into another --run-dir", dir, TuneFile, dir)
	}
	kilns, err := isKilnDir(dir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, CheckpointFile)); resume && !kilns && errors.Is(err, fs.ErrNotExist) {
		// Refused before the lock, which would leave a kiln.lock in a
		// directory that never held a run. (Under the lock open checks
		// again: a run may have started there since.)
		return nil, fmt.Errorf("--resume: %s holds no run to resume", dir)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	r := &RunDir{Path: dir, lock: lock}
	if err := r.open(resume, kilns); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// open decides, under the lock, whether the run resumes, and readies the
// files for it.
func (r *RunDir) open(resume, kilns bool) error {
	_, err := os.Stat(r.File(CheckpointFile))
	hasCheckpoint := err == nil
	_, err = os.Stat(r.File(SummaryFile))
	hasSummary := err == nil
	switch {
	case resume && !hasCheckpoint && !kilns:
		return fmt.Errorf("--resume: %s holds no run to resume", r.Path)
	case !resume && (hasCheckpoint || hasSummary):
		return fmt.Errorf("%s already holds a run: pass --resume to continue it, or choose another --run-dir", r.Path)
	}
	if err := removeTemps(r.Path); err != nil {
		return err
	}
	if !hasCheckpoint && hasSummary {
		// A finished run whose checkpoint was deleted (it is not needed
		// once summary.json is written): finished, not a run killed
		// before its first checkpoint, whose files would be removed.
		r.finished = true
		return nil
	}
	if _, err := os.Stat(r.File(LastWeights)); err == nil && !hasCheckpoint {
		// last.safetensors is written after each checkpoint: this run had
		// one, lost since. Starting over would delete its files.
		return &DamagedRunError{fmt.Errorf("%s holds a run whose %s is missing (its %s is there, written after each checkpoint), "+
			"so the run cannot resume (nothing was changed)", r.Path, CheckpointFile, LastWeights)}
	}
	r.restart = resume && !hasCheckpoint
	if hasCheckpoint {
		st, err := ReadRunState(r.File(CheckpointFile))
		if err != nil {
			return fmt.Errorf("resume: %w", err)
		}
		r.state = &st
		_, err = os.Stat(r.File(SummaryFile))
		r.finished = err == nil
		if b, err := os.ReadFile(r.File(MetricsFile)); err == nil {
			r.metrics = b
		}
		if !r.finished {
			if st.Files == nil {
				// An older Kiln's checkpoint, without the sizes: the
				// records past its step are the ones a resume writes again.
				err = r.cutMetricsAfter(st.Step)
			} else {
				err = r.cutBack(st.Files)
			}
			if err != nil {
				return err
			}
		}
		r.metricsSize, r.metrics = int64(len(r.metrics)), nil
	} else if err := removeRunFiles(r.Path); err != nil {
		return err
	}
	r.log, err = durable.Append(r.File(LogFile))
	if err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	return nil
}

// Resuming reports whether the run continues from a checkpoint.
func (r *RunDir) Resuming() bool { return r.state != nil }

// Finished reports whether the run being resumed had already ended
// (summary.json is written last): there is nothing left to do.
func (r *RunDir) Finished() bool { return r.finished }

// ShortFiles are the appended files (metrics.jsonl, train.log) that the
// resume found shorter than the checkpoint recorded: records written before
// it were lost, by a power cut or an edit.
func (r *RunDir) ShortFiles() []string { return r.short }

// Restarted reports whether --resume found a run killed before its first
// checkpoint, which therefore starts from step 0.
func (r *RunDir) Restarted() bool { return r.restart }

// WriteStart writes config.yaml and model.json at the start of a new run;
// a resumed run keeps those it has.
func (r *RunDir) WriteStart(c Config, m ModelInfo) error {
	if r.Resuming() {
		return nil
	}
	y, err := c.YAML()
	if err != nil {
		return err
	}
	if err := r.write(ConfigFile, y); err != nil {
		return err
	}
	return r.write(ModelFile, ModelJSON(m))
}

// restoreConfig writes config.yaml again where a resume found it gone, once
// the checkpoint has accepted c, the settings given in its place: eval,
// predict and export read the run's data set from it.
func (r *RunDir) restoreConfig(c Config) error {
	if _, err := os.Stat(r.File(ConfigFile)); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	y, err := c.YAML()
	if err != nil {
		return err
	}
	return r.write(ConfigFile, y)
}

// Logger returns a logger writing JSON lines to train.log and, when console
// is not nil, human-readable lines there too. A failed write to train.log
// becomes the run's error (Err).
func (r *RunDir) Logger(console io.Writer) zerolog.Logger {
	return r.LoggerAt(console, zerolog.DebugLevel)
}

// LoggerAt is Logger with the console showing level and above only
// (--log-level); train.log still gets every line.
func (r *RunDir) LoggerAt(console io.Writer, level zerolog.Level) zerolog.Logger {
	var w io.Writer = logWriter{r}
	if console != nil {
		cw := zerolog.LevelWriterAdapter{Writer: ConsoleWriter(console)}
		w = zerolog.MultiLevelWriter(w, &zerolog.FilteredLevelWriter{Writer: cw, Level: level})
	}
	return zerolog.New(w).With().Timestamp().Logger()
}

// ConsoleWriter writes log lines for a person: colour on a terminal only
// (a redirected console kept escape codes), figures to 4 significant
// digits (train.log keeps every digit).
func ConsoleWriter(out io.Writer) zerolog.ConsoleWriter {
	f, isFile := out.(*os.File)
	return zerolog.ConsoleWriter{Out: out, TimeFormat: "15:04:05", NoColor: !isFile || !isatty.IsTerminal(f.Fd()),
		FormatFieldValue: consoleValue}
}

// consoleValue writes a log field's value: a fraction as 4 significant
// digits (lr=0.04972, not 0.049720771772545594), a count as it is.
func consoleValue(v any) string {
	n, ok := v.(json.Number)
	if b, raw := v.([]byte); raw {
		return string(b) // a bool or a list, which zerolog hands over as its JSON text
	}
	if !ok {
		return fmt.Sprint(v)
	}
	f, err := n.Float64()
	if err != nil || !strings.ContainsAny(string(n), ".eE") {
		return string(n)
	}
	if math.Abs(f) >= 1000 {
		return strconv.FormatFloat(f, 'f', 0, 64)
	}
	return strconv.FormatFloat(f, 'g', 4, 64)
}

type logWriter struct{ r *RunDir }

func (w logWriter) Write(b []byte) (int, error) {
	n, err := w.r.log.Write(b)
	w.r.Fail(err)
	return n, err
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
	// A kill mid-write leaves a last line cut short, which readers skip and
	// a resume cuts back (the checkpoint holds the size before it).
	r.mu.Lock()
	err = appendLine(r.File(MetricsFile), line)
	if err == nil {
		r.metricsSize += int64(len(line)) + 1
	}
	r.mu.Unlock()
	r.Fail(err)
	return err
}

// WriteJSON writes v as indented JSON to name, atomically.
func (r *RunDir) WriteJSON(name string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return r.write(name, append(b, '\n'))
}

// write replaces a file of the run atomically; a failure is also the run's
// error.
func (r *RunDir) write(name string, data []byte) error {
	err := durable.WriteFile(r.File(name), data)
	r.Fail(err)
	return err
}

// Fail records err, when not nil, as the run's error, unless an earlier one
// is already recorded. Writes that are not the training's own (pictures,
// histograms, log lines) report here, so that a full disk stops the run at
// its next check instead of leaving gaps in its files.
func (r *RunDir) Fail(err error) {
	if err == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

// Err is the first write to the run directory that failed, or nil.
func (r *RunDir) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// File returns the path of a file in the run directory.
func (r *RunDir) File(name string) string { return filepath.Join(r.Path, name) }

// held reports whether r is open: made by OpenRunDir and not yet closed.
func (r *RunDir) held() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lock != nil
}

// Close closes the log and releases the lock.
func (r *RunDir) Close() error {
	var err error
	if r.log != nil {
		err = r.log.Close()
		r.log = nil
	}
	if r.lock != nil {
		r.lock.Close() // releases the flock
		r.lock = nil
	}
	return err
}

// WriteFileAtomic replaces path with data: a temporary file in the same
// directory, fsync, rename, fsync of the directory.
func WriteFileAtomic(path string, data []byte) error { return durable.WriteFile(path, data) }

// ModelInfo is a run's model.json: the architecture, so that weights can be
// rebuilt into the right model, and what its inputs and outputs mean, for
// kiln predict and the exports.
type ModelInfo struct {
	Model string      `json:"model"`
	Spec  layers.Spec `json:"spec"`
	// Classes names the outputs of a classifier in label order.
	Classes []string `json:"classes,omitempty"`
	// Mean and Std are the per-channel normalisation the model's inputs
	// had: a pixel value v in [0, 1] went in as (v − Mean[c]) / Std[c].
	Mean []float64 `json:"mean,omitempty"`
	Std  []float64 `json:"std,omitempty"`
	// Target is a regression's target: its name, and the scale and shift
	// from the model's output to it (the training rows'; absent from runs
	// of older Kiln).
	Target *ModelTarget `json:"target,omitempty"`
	// Summary is the layer table kiln summary prints: output shapes,
	// parameters and FLOPs for one sample (kiln train fills it).
	Summary *layers.Summary `json:"summary,omitempty"`
}

// ModelInfoOf is the model.json of a model trained on ds.
func ModelInfoOf(model string, spec layers.Spec, ds *data.Dataset) ModelInfo {
	m := ModelInfo{Model: model, Spec: spec, Mean: ds.Mean, Std: ds.Std}
	if ds.Task == data.Classification {
		m.Classes = ds.Classes
	}
	if ds.Task == data.Regression {
		m.Target = &ModelTarget{Name: ds.TargetName, Scale: cmp.Or(ds.TargetScale, 1), Shift: ds.TargetShift}
	}
	return m
}

// ModelTarget is a regression target: a model output y is y·Scale + Shift
// in the target's unit.
type ModelTarget struct {
	Name  string  `json:"name,omitempty"`
	Scale float64 `json:"scale"`
	Shift float64 `json:"shift"`
}

// ModelJSON is m as model.json holds it.
func ModelJSON(m ModelInfo) []byte {
	b, _ := json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}
