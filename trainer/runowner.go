package trainer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/kiln-ml/kiln/internal/durable"
)

// Who owns a run directory, and what a resumed run keeps of it.
//
// A directory is a Kiln run directory when it holds kiln.lock (written when
// a run first opens it) or, for runs from before the lock, a Kiln
// checkpoint. Any other directory becomes one only while it holds none of
// the files a run writes: a user's config.yaml is never overwritten. Other
// files there (notes, a redirected log) are left alone.

// runFiles are the names a run writes directly in its directory.
var runFiles = []string{MetricsFile, LogFile, ConfigFile, ModelFile, LastWeights, BestWeights,
	CheckpointFile, SummaryFile, HistogramsFile, VisualsFile, PlotsDir}

func isRunFile(name string) bool {
	return slices.Contains(runFiles, name) || strings.HasPrefix(name, EventsPrefix)
}

// OwnFile reports whether name, in dir, is one of the files of a run or
// tune directory dir: what `kiln export --out` must not replace.
func OwnFile(dir, name string) bool {
	return (isRunFile(name) || name == LockFile || name == TuneFile) && RunOrTuneFileIn(dir) != ""
}

// RunOrTuneFileIn is the file that makes dir a run or tune directory (its
// lock, tune.json or a file a run writes), "" when there is none.
func RunOrTuneFileIn(dir string) string {
	for _, f := range []string{LockFile, TuneFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return f
		}
	}
	return RunFileIn(dir)
}

// RunFileIn is the first file of dir's that a training run writes (its
// name), "" when it holds none or cannot be read: a tune is not started in
// a run's directory.
func RunFileIn(dir string) string {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if isRunFile(e.Name()) {
			return e.Name()
		}
	}
	return ""
}

// appendedFile reports the files a run appends to; a checkpoint records
// their sizes, to which a resume cuts them back.
func appendedFile(name string) bool {
	return name == MetricsFile || name == LogFile || name == HistogramsFile || strings.HasPrefix(name, EventsPrefix)
}

// isKilnDir reports whether dir is already a Kiln run directory, and refuses
// one that holds a run file Kiln did not write.
func isKilnDir(dir string) (bool, error) {
	if _, err := os.Stat(filepath.Join(dir, LockFile)); err == nil {
		return true, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		// A folder that can be listed but not entered (no x permission):
		// its run files were said not to be a run's.
		return false, fmt.Errorf("run directory: %w", err)
	}
	if _, err := ReadRunState(filepath.Join(dir, CheckpointFile)); err == nil {
		return true, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("run directory: %w", err)
	}
	for _, e := range entries {
		if isRunFile(e.Name()) {
			return false, fmt.Errorf("%s exists and was not written by a Kiln run (%s has no %s): "+
				"choose another --run-dir, or move the file away", filepath.Join(dir, e.Name()), dir, LockFile)
		}
	}
	return false, nil
}

// lockDir takes dir's kiln.lock for the life of this process's run (the
// kernel releases a flock when its holder dies, however it dies) and writes
// the pid into it for the message a second process gets.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666) // under the umask
	if err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(b[:n]))
			return nil, fmt.Errorf("%s is in use by another Kiln process (pid %s holds %s): "+
				"wait for it to end, or choose another --run-dir", dir, pid, path)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	// The pid is for the message above only: the flock is the lock.
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

// LockDir takes the lock of dir (made when missing) for a process that owns
// a directory other than a run's, a tune's: a second process is refused as
// OpenRunDir refuses one. Closing releases it.
func LockDir(dir string) (io.Closer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	return lockDir(dir)
}

// removeTemps removes the temporary files that a kill during an atomic
// write left in dir (only those of run files: nobody else's).
func removeTemps(dir string) error {
	if err := durable.RemoveTemps(dir, isRunFile); err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	return nil
}

// removeRunFiles clears what a run that never reached its first checkpoint
// left, before its directory is used again from step 0. config.yaml and
// model.json are rewritten, plots/ is kiln plot's.
func removeRunFiles(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !isRunFile(name) || name == ConfigFile || name == ModelFile || name == PlotsDir {
			continue
		}
		if err := durable.Remove(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("run directory: %w", err)
		}
	}
	return nil
}

// appendedSizes are the sizes of the appended files now: what a checkpoint
// records. The caller has flushed the event file. Each file is synced
// first: a power cut would otherwise leave a file shorter than its
// checkpoint says, the records before the checkpoint lost for good.
func (r *RunDir) appendedSizes() (map[string]int64, error) {
	if err := r.syncAppended(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(r.Path)
	if err != nil {
		return nil, err
	}
	sizes := map[string]int64{}
	for _, e := range entries {
		if !appendedFile(e.Name()) || e.Name() == MetricsFile {
			continue
		}
		// The file's size, through a symbolic link (lstat's was the link's
		// text, and the resume cut a linked train.log to it).
		fi, err := os.Stat(filepath.Join(r.Path, e.Name()))
		if err != nil {
			return nil, err
		}
		sizes[e.Name()] = fi.Size()
	}
	r.mu.Lock()
	sizes[MetricsFile] = r.metricsSize
	r.mu.Unlock()
	return sizes, nil
}

// syncAppended makes the appended files durable: before a checkpoint
// records their sizes, and before summary.json says the run is over.
func (r *RunDir) syncAppended() error {
	if err := r.log.Sync(); err != nil {
		return err
	}
	entries, err := os.ReadDir(r.Path)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if appendedFile(e.Name()) && e.Name() != LogFile {
			if err := durable.SyncFile(filepath.Join(r.Path, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// cutMetricsAfter drops metrics.jsonl's records past step (and a torn last
// line), for a checkpoint that recorded no file sizes.
func (r *RunDir) cutMetricsAfter(step int) error {
	var kept []byte
	for line := range bytes.Lines(r.metrics) {
		var rec struct {
			Step  *int   `json:"step"`
			Split string `json:"split"`
		}
		// The test record comes after the last checkpoint, at its step: a
		// run that has not finished tests again.
		if !bytes.HasSuffix(line, []byte("\n")) || json.Unmarshal(line, &rec) != nil || rec.Step == nil || *rec.Step > step ||
			rec.Split == "test" {
			break
		}
		kept = append(kept, line...)
	}
	if len(kept) == len(r.metrics) {
		return nil
	}
	r.metrics = kept
	return r.write(MetricsFile, r.metrics)
}

// cutBack returns the appended files to the sizes a checkpoint recorded:
// what was written after it will be written again. Files made after it go.
// A checkpoint from before sizes were recorded (nil) cuts nothing.
func (r *RunDir) cutBack(sizes map[string]int64) error {
	if sizes == nil {
		return nil
	}
	if n := sizes[MetricsFile]; int64(len(r.metrics)) != n {
		if int64(len(r.metrics)) < n {
			r.short = append(r.short, MetricsFile)
		}
		// A last line torn by a full disk is dropped with what follows.
		r.metrics = r.metrics[:min(n, int64(len(r.metrics)))]
		if i := bytes.LastIndexByte(r.metrics, '\n'); i+1 != len(r.metrics) {
			r.metrics = r.metrics[:i+1]
		}
		if err := r.write(MetricsFile, r.metrics); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(r.Path)
	if err != nil {
		return fmt.Errorf("run directory: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !appendedFile(name) || name == MetricsFile {
			continue
		}
		path := filepath.Join(r.Path, name)
		n, ok := sizes[name]
		if !ok {
			err = durable.Remove(path)
		} else {
			err = r.cutTo(path, n)
		}
		if err != nil {
			return fmt.Errorf("resume: %w", err)
		}
	}
	return nil
}

// cutTo cuts an appended file back to the size its checkpoint recorded. One
// found shorter (a power cut before Kilns that synced these files) is
// noted, and its torn last line dropped: lines appended to it would join
// that line.
func (r *RunDir) cutTo(path string, n int64) error {
	fi, err := os.Stat(path)
	if err != nil || fi.Size() >= n {
		return durable.Truncate(path, n)
	}
	r.short = append(r.short, filepath.Base(path))
	if strings.HasPrefix(filepath.Base(path), EventsPrefix) || fi.Size() == 0 {
		return nil // records, not lines: TensorBoard skips a torn one
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return durable.Truncate(path, int64(bytes.LastIndexByte(b, '\n')+1))
}
