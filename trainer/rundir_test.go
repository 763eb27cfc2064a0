package trainer

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/engine/safetensors"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer/data"
	"github.com/kiln-ml/kiln/trainer/tbevents"
	"github.com/rs/zerolog"
)

// Issue 12, item 2: one process owns a run directory.
func TestRunDirIsLockedWhileOpen(t *testing.T) {
	dir := t.TempDir()
	first, err := OpenRunDir(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = OpenRunDir(dir, false)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second open: %v; want a refusal naming pid %d", err, os.Getpid())
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := OpenRunDir(dir, false)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	again.Close()
}

// A run directory named through a symbolic link stays the folder the link
// named at open: a link moved during the run (runs/latest) sent the rest of
// its files, unlocked, into another run's folder.
func TestRunDirThroughALinkStaysPut(t *testing.T) {
	base := t.TempDir()
	a, b, link := filepath.Join(base, "a"), filepath.Join(base, "b"), filepath.Join(base, "latest")
	for _, d := range []string{a, b} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("a", link); err != nil {
		t.Fatal(err)
	}
	r, err := OpenRunDir(link, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	os.Remove(link)
	if err := os.Symlink("b", link); err != nil {
		t.Fatal(err)
	}
	if err := r.WriteStart(DefaultConfig(), ModelInfo{Model: "lenet"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(a, ConfigFile)); err != nil {
		t.Errorf("the run's files left the folder its link named at open: %v", err)
	}
	if _, err := os.Stat(filepath.Join(b, ConfigFile)); err == nil {
		t.Error("the run wrote into the folder the link was moved to")
	}
}

// Issue 12, item 3: a directory of the user's own files is not a run's.
func TestRunDirRefusesTheUsersOwnFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("notes.txt", "mine")
	run, err := OpenRunDir(dir, false)
	if err != nil {
		t.Fatalf("a directory with only a user's notes: %v", err)
	}
	run.Close()
	dir = t.TempDir()
	write("config.yaml", "epochs: 99\n")
	write("notes.txt", "mine")
	for _, resume := range []bool{false, true} {
		_, err = OpenRunDir(dir, resume)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "config.yaml")) {
			t.Fatalf("resume=%v: %v; want a refusal naming config.yaml", resume, err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("the refusal changed the directory: %v", entries)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "config.yaml")); string(b) != "epochs: 99\n" {
		t.Fatalf("config.yaml now holds %q", b)
	}
}

// Issue 12, item 6: temporary files a kill left are removed, only Kiln's.
func TestRunDirRemovesTemporaryFilesOfKills(t *testing.T) {
	dir := t.TempDir()
	run, err := OpenRunDir(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	run.Close()
	for _, name := range []string{".metrics.jsonl.tmp12345", ".checkpoint.safetensors.tmp9", ".mine.tmp77", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run, err = OpenRunDir(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	run.Close()
	var names []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{".mine.tmp77", LockFile, "notes.txt", LogFile}) {
		t.Fatalf("directory holds %v", names)
	}
}

// Issue 12, item 4: --resume of a run stopped before its first checkpoint
// starts over; of a directory that never held a run, it is an error.
func TestResumeWithoutACheckpoint(t *testing.T) {
	none := filepath.Join(t.TempDir(), "none")
	if _, err := OpenRunDir(none, true); err == nil || !strings.Contains(err.Error(), "no run to resume") {
		t.Fatalf("resume of nothing: %v", err)
	}
	if _, err := os.Stat(none); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused --resume made %s: %v", none, err)
	}
	empty := t.TempDir()
	if _, err := OpenRunDir(empty, true); err == nil || !strings.Contains(err.Error(), "holds no run") {
		t.Fatalf("resume of an empty directory: %v", err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Errorf("a refused --resume left %v in a directory that held no run", entries)
	}
	dir := t.TempDir()
	run, err := OpenRunDir(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := run.Record(MetricsRecord{Step: 5, Split: "val"}); err != nil {
		t.Fatal(err)
	}
	run.Close()
	run, err = OpenRunDir(dir, true)
	if err != nil {
		t.Fatal(err)
	}
	defer run.Close()
	if run.Resuming() || !run.Restarted() {
		t.Fatalf("resuming %v, restarted %v; want a restart", run.Resuming(), run.Restarted())
	}
	if _, err := os.Stat(filepath.Join(dir, MetricsFile)); !os.IsNotExist(err) {
		t.Fatalf("the earlier attempt's metrics.jsonl is still there: %v", err)
	}
}

// A run whose checkpoint was lost (deleted, a power cut) is not one killed
// before its first: starting over would delete its metrics, log and
// weights. It is refused, resumed or not, and nothing is changed.
func TestRunWithItsCheckpointLostIsRefused(t *testing.T) {
	dir := stoppedAfter(t, blobConfig(), 1)
	if err := os.Remove(filepath.Join(dir, CheckpointFile)); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadDir(dir)
	for _, resume := range []bool{true, false} {
		_, err := OpenRunDir(dir, resume)
		if err == nil || !strings.Contains(err.Error(), "checkpoint.safetensors is missing") || !strings.Contains(err.Error(), "another --run-dir") {
			t.Fatalf("resume %v of a run whose checkpoint is gone: %v", resume, err)
		}
	}
	if after, _ := os.ReadDir(dir); len(after) != len(before) {
		t.Fatalf("the refused opens changed the directory: %v, then %v", before, after)
	}
}

// A run that is to end on its best weights, resumed with best.safetensors
// gone or cut short: it ended on the last weights saying nothing, or failed
// after training every epoch left. The resume refuses it at once.
func TestResumeWithRestoreBestNeedsTheBestWeights(t *testing.T) {
	c := blobConfig()
	c.EarlyStop, c.RestoreBest = "val_loss", true
	for _, damage := range []string{"missing", "cut short"} {
		dir := stoppedAfter(t, c, 1)
		best := filepath.Join(dir, BestWeights)
		fi, err := os.Stat(best)
		if err != nil {
			t.Fatal(err)
		}
		if damage == "missing" {
			err = os.Remove(best)
		} else {
			err = os.Truncate(best, fi.Size()/2)
		}
		if err != nil {
			t.Fatal(err)
		}
		_, err = newBlobTrainer(t, c, dir, true).Fit(context.Background(), blobSplits(t))
		if _, ok := errors.AsType[*DamagedRunError](err); !ok || !strings.Contains(err.Error(), "--restore-best") {
			t.Fatalf("resume with best.safetensors %s: %v", damage, err)
		}
		if _, err := os.Stat(filepath.Join(dir, SummaryFile)); err == nil {
			t.Fatalf("resume with best.safetensors %s ended the run", damage)
		}
	}
}

// A checkpoint cut short (a power cut, a copy that stopped) is named as
// such, with what to do, and is an error a tune stops on.
func TestResumeFromACheckpointCutShort(t *testing.T) {
	dir := stoppedAfter(t, blobConfig(), 1)
	for _, size := range []int64{0, 5, 600} {
		if err := os.Truncate(filepath.Join(dir, CheckpointFile), size); err != nil {
			t.Fatal(err)
		}
		_, err := OpenRunDir(dir, true)
		if _, ok := errors.AsType[*DamagedRunError](err); !ok || !strings.Contains(err.Error(), "cut short") ||
			!strings.Contains(err.Error(), "restore the file") {
			t.Fatalf("resume from a checkpoint cut to %d bytes: %v", size, err)
		}
	}
}

// Issue 12, item 4: what a run appended after its checkpoint is cut away on
// resume, so the resumed run's records equal an uninterrupted run's.
func TestResumeCutsTheAppendedFilesBackToTheCheckpoint(t *testing.T) {
	c, splits, straight, dir := stoppedBesideStraight(t)
	// What a run killed in its third epoch would have added, torn lines too.
	appendTo := func(name, text string) {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(text)
		f.Close()
	}
	appendTo(MetricsFile, `{"step":35,"epoch":2.2,"split":"val","loss":1,"lr":0.01}`+"\n"+`{"step":40,"ep`)
	appendTo(LogFile, `{"level":"info","message":"from the killed part"}`+"\n")
	appendTo(HistogramsFile, `{"step":35,"epoch":2.2,"params":[]}`+"\n")
	appendTo(EventsPrefix+"9999999999.killed", "a session that died")
	if _, err := newBlobTrainer(t, c, dir, true).Fit(context.Background(), splits); err != nil {
		t.Fatal(err)
	}
	want, got := metricsOf(t, straight), metricsOf(t, dir)
	if !slices.Equal(want, got) {
		t.Fatalf("metrics.jsonl after resume:\n%s\nuninterrupted:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if want, got := scalarsOf(t, straight), scalarsOf(t, dir); !slices.Equal(want, got) {
		t.Fatalf("TensorBoard scalars after resume:\n%v\nuninterrupted:\n%v", got, want)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, LogFile)); strings.Contains(string(b), "from the killed part") {
		t.Fatal("train.log keeps a line written after the checkpoint")
	}
}

// A power cut after a checkpoint, on a Kiln that did not sync the appended
// files, left them shorter than it recorded, ending mid-line: the resume
// must say so, drop the torn lines (a record appended to one was lost with
// it) and go on to the uninterrupted run's later records.
func TestResumeOfAppendedFilesCutShortByAPowerCut(t *testing.T) {
	c, splits, straight, dir := stoppedBesideStraight(t)
	kept := cutShort(t, filepath.Join(dir, MetricsFile))
	cutShort(t, filepath.Join(dir, HistogramsFile))
	tr := newBlobTrainer(t, c, dir, true)
	if _, err := tr.Fit(context.Background(), splits); err != nil {
		t.Fatal(err)
	}
	if short := tr.Run.ShortFiles(); !slices.Equal(short, []string{MetricsFile, HistogramsFile}) {
		t.Fatalf("files found short: %v, want metrics.jsonl and histograms.jsonl", short)
	}
	readJSONLines[map[string]any](t, filepath.Join(dir, HistogramsFile)) // every line whole
	keptThenStraight(t, dir, straight, kept)
}

// cutShort cuts the file at path to two thirds of its size, mid-line, as a
// power cut leaves an unsynced file, and returns the whole lines left.
func cutShort(t *testing.T, path string) int {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()*2/3); err != nil {
		t.Fatal(err)
	}
	return len(readWholeLines(t, path))
}

// keptThenStraight checks that dir's metrics.jsonl holds the first kept
// records of the uninterrupted run in straight, then its last ones: those
// lost with the file's tail are gone, none twice.
func keptThenStraight(t *testing.T, dir, straight string, kept int) {
	t.Helper()
	want, got := metricsOf(t, straight), metricsOf(t, dir)
	if len(got) <= kept || !slices.Equal(got[:kept], want[:kept]) || !slices.Equal(got[kept:], want[len(want)-(len(got)-kept):]) {
		t.Fatalf("metrics.jsonl after resume (the first %d kept):\n%s\nuninterrupted:\n%s", kept, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// The resume that found files short is itself killed before its next
// checkpoint: the next resume must cut them back to where the first found
// them, not to the older, larger sizes the checkpoint had recorded (which
// kept part of what the first resume wrote, and its records came twice).
func TestResumeKilledAfterFindingFilesShort(t *testing.T) {
	c, splits, straight, dir := stoppedBesideStraight(t)
	kept := cutShort(t, filepath.Join(dir, MetricsFile))
	ran, err := ReadRunState(filepath.Join(dir, CheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	// The resume runs on other threads: the checkpoint it writes again
	// still says where the steps so far ran.
	defer engine.SetThreads(engine.Threads())
	engine.SetThreads(engine.Threads() + 1)
	killed := newBlobTrainer(t, c, dir, true)
	killed.Callbacks.OnValidation = func(MetricsRecord) bool { panic("killed") } // after its record, before a checkpoint
	func() {
		defer func() { recover() }()
		killed.Fit(context.Background(), splits)
	}()
	if st, err := ReadRunState(filepath.Join(dir, CheckpointFile)); err != nil || st.Machine != ran.Machine {
		t.Fatalf("the checkpoint written again at the resume says its steps ran on %q, they ran on %q (%v)", st.Machine, ran.Machine, err)
	}
	engine.SetThreads(engine.Threads() - 1)
	if _, err := newBlobTrainer(t, c, dir, true).Fit(context.Background(), splits); err != nil {
		t.Fatal(err)
	}
	keptThenStraight(t, dir, straight, kept)
}

// readWholeLines is a file's lines that end with a newline.
func readWholeLines(t *testing.T, path string) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	return lines[:len(lines)-1]
}

// A plateau schedule that has cut the learning rate before the stop goes on
// from its cut LR, patience count and best loss, as ReduceLROnPlateau's
// state_dict does: resumed, the run's records are the straight run's.
func TestResumeKeepsThePlateauSchedulesState(t *testing.T) {
	c := blobConfig()
	c.Schedule, c.PlateauPatience, c.PlateauFactor, c.ValEvery, c.LR = "plateau", 1, 0.5, 1, 1.5
	splits := blobSplits(t)
	straight, dir := t.TempDir(), t.TempDir()
	if _, err := newBlobTrainer(t, c, straight, false).Fit(context.Background(), splits); err != nil {
		t.Fatal(err)
	}
	c1 := c
	c1.StopAfterEpoch = 2
	if _, err := newBlobTrainer(t, c1, dir, false).Fit(context.Background(), splits); err != nil {
		t.Fatal(err)
	}
	recs := readJSONLines[MetricsRecord](t, filepath.Join(dir, MetricsFile))
	if last := recs[len(recs)-1]; !(last.LR < c.LR) {
		t.Fatalf("the plateau schedule had not cut the LR by the stop (%v): the test needs one that has", last.LR)
	}
	resumeLikeStraight(t, c, splits, dir, straight)
}

// stoppedAfter trains c until the end of epoch `epochs` into a new run
// directory, which it returns closed (its lock released, as the process
// that ran it would).
func stoppedAfter(t *testing.T, c Config, epochs int) string {
	t.Helper()
	c.StopAfterEpoch = epochs
	dir := t.TempDir()
	if _, err := newBlobTrainer(t, c, dir, false).Fit(context.Background(), blobSplits(t)); err != nil {
		t.Fatal(err)
	}
	if prev, ok := openRuns.LoadAndDelete(dir); ok {
		prev.(*RunDir).Close()
	}
	return dir
}

// stoppedBesideStraight trains a blob run whole (straight) and the same run
// stopped after its second epoch (dir), validating every 5 steps.
func stoppedBesideStraight(t *testing.T) (c Config, splits *data.Splits, straight, dir string) {
	c = blobConfig()
	c.ValEvery = 5
	splits = blobSplits(t)
	straight = t.TempDir()
	if _, err := newBlobTrainer(t, c, straight, false).Fit(context.Background(), splits); err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	c1 := c
	c1.StopAfterEpoch = 2
	if _, err := newBlobTrainer(t, c1, dir, false).Fit(context.Background(), splits); err != nil {
		t.Fatal(err)
	}
	return c, splits, straight, dir
}

// asOlderCheckpoint rewrites dir's checkpoint as an older Kiln wrote them,
// without the appended files' sizes or a digest, and returns its state.
func asOlderCheckpoint(t *testing.T, dir string) RunState {
	t.Helper()
	ckpt := filepath.Join(dir, CheckpointFile)
	tensors, meta, err := safetensors.ReadFile(ckpt)
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseRunState(ckpt, meta)
	if err != nil {
		t.Fatal(err)
	}
	st.Files = nil
	b, _ := json.Marshal(st)
	if err := safetensors.WriteFile(ckpt, tensors, map[string]string{checkpointKey: string(b)}); err != nil {
		t.Fatal(err)
	}
	return st
}

// resumeLikeStraight resumes the run in dir to its end and checks that its
// metrics.jsonl holds the records of the uninterrupted run in straight.
func resumeLikeStraight(t *testing.T, c Config, splits *data.Splits, dir, straight string) {
	t.Helper()
	if _, err := newBlobTrainer(t, c, dir, true).Fit(context.Background(), splits); err != nil {
		t.Fatal(err)
	}
	if want, got := metricsOf(t, straight), metricsOf(t, dir); !slices.Equal(want, got) {
		t.Fatalf("metrics.jsonl after resume:\n%s\nuninterrupted:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// metricsOf is a run's metrics.jsonl with the timings left out.
func metricsOf(t *testing.T, dir string) []string {
	var out []string
	for _, r := range readJSONLines[MetricsRecord](t, filepath.Join(dir, MetricsFile)) {
		r.Time, r.Wall, r.ImagesPS = "", 0, 0
		b, _ := json.Marshal(r)
		out = append(out, string(b))
	}
	return out
}

// scalarsOf lists the scalars of a run's event files, in file order.
func scalarsOf(t *testing.T, dir string) []string {
	files, _ := filepath.Glob(filepath.Join(dir, EventsPrefix+"*"))
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

// Issue 12, item 11: a checkpoint whose metadata no run could have written
// is refused on resume.
func TestResumeRefusesEditedCheckpointMetadata(t *testing.T) {
	c := blobConfig()
	c.StopAfterEpoch = 1
	splits := blobSplits(t)
	for name, edit := range map[string]func(*RunState){
		"negative step":  func(st *RunState) { st.Step = -16 },
		"epoch past run": func(st *RunState) { st.Epoch, st.Step = 9, 9*16 },
		"step off epoch": func(st *RunState) { st.Step = 40 },
	} {
		dir := t.TempDir()
		if _, err := newBlobTrainer(t, c, dir, false).Fit(context.Background(), splits); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, CheckpointFile)
		tensors, meta, err := safetensors.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var st RunState
		if err := json.Unmarshal([]byte(meta[checkpointKey]), &st); err != nil {
			t.Fatal(err)
		}
		edit(&st)
		b, _ := json.Marshal(st)
		meta[checkpointKey] = string(b)
		// With its digest made again, as a writer with a bug would have:
		// the state's own checks are what refuse it (TestCheckpointDamageIsRefused
		// covers an edit that leaves the digest).
		sum, err := safetensors.Digest(tensors, meta[checkpointKey])
		if err != nil {
			t.Fatal(err)
		}
		meta[checkpointDigestKey] = hex.EncodeToString(sum[:])
		if err := safetensors.WriteFile(path, tensors, meta); err != nil {
			t.Fatal(err)
		}
		c2 := c
		c2.StopAfterEpoch = 0
		_, err = newBlobTrainer(t, c2, dir, true).Fit(context.Background(), splits)
		if err == nil || !strings.Contains(err.Error(), "was the file edited") {
			t.Errorf("%s: resume gave %v", name, err)
		}
	}
}

// Issue 12, item 11: NaN weights are an error, not a loss of NaN and a
// top-5 accuracy of 100%.
func TestEvaluateRefusesNonFiniteOutputs(t *testing.T) {
	tr := newBlobTrainer(t, blobConfig(), "", false)
	_, params := layers.Params(tr.Model)
	params[0].Value.SetAt(0, math.NaN())
	_, err := tr.Evaluate(blobSplits(t).Test)
	if err == nil || !strings.Contains(err.Error(), "not finite") {
		t.Fatalf("got %v", err)
	}
}

// A run interrupted mid-epoch (Ctrl-C) and resumed records that epoch's
// training figures over the whole epoch, as an uninterrupted run does.
func TestInterruptedMidEpochResumesToTheSameRecords(t *testing.T) {
	c := blobConfig()
	c.ValEvery = 5
	splits := blobSplits(t)
	straight := t.TempDir()
	if _, err := newBlobTrainer(t, c, straight, false).Fit(context.Background(), splits); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	tr := newBlobTrainer(t, c, dir, false)
	tr.Callbacks.OnValidation = func(r MetricsRecord) bool {
		if r.Step == 25 { // the tenth step of the second epoch
			cancel()
		}
		return false
	}
	if _, err := tr.Fit(ctx, splits); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("got %v, want ErrInterrupted", err)
	}
	resumeLikeStraight(t, c, splits, dir, straight)
}

// LoggerAt hides the lines below its level from the console only:
// train.log keeps every line.
func TestLoggerAtFiltersTheConsoleOnly(t *testing.T) {
	dir := t.TempDir()
	run, err := OpenRunDir(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	var console bytes.Buffer
	log := run.LoggerAt(&console, zerolog.WarnLevel)
	log.Debug().Msg("a debug line")
	log.Info().Msg("an info line")
	log.Warn().Msg("a warning")
	if err := run.Close(); err != nil {
		t.Fatal(err)
	}
	got := console.String()
	if strings.Contains(got, "debug line") || strings.Contains(got, "info line") || !strings.Contains(got, "a warning") {
		t.Errorf("console at warn: %q", got)
	}
	b, err := os.ReadFile(filepath.Join(dir, LogFile))
	if err != nil || !bytes.Contains(b, []byte("a debug line")) || !bytes.Contains(b, []byte("an info line")) {
		t.Errorf("train.log lost lines the console hid (%v):\n%s", err, b)
	}
}

// A tune's directory is not a run's: training into it, with --resume or
// without, is refused, naming tune.json, and changes nothing.
func TestRunDirRefusesATuneDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, TuneFile), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, resume := range []bool{false, true} {
		if _, err := OpenRunDir(dir, resume); err == nil || !strings.Contains(err.Error(), "holds a kiln tune (tune.json)") {
			t.Errorf("resume=%v: %v, want a refusal naming the tune", resume, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the refusal changed the directory: %v", entries)
	}
}

// A resume on data other than the run's (a label changed in the file since
// the checkpoint) is refused, naming the data set; on the same data it goes
// on.
func TestResumeRefusesOtherData(t *testing.T) {
	c := blobConfig()
	dir := stoppedAfter(t, c, 1)
	other := blobSplits(t)
	other.Train.Labels[7] = (other.Train.Labels[7] + 1) % 4
	if _, err := newBlobTrainer(t, c, dir, true).Fit(context.Background(), other); err == nil || !strings.Contains(err.Error(), "data set is not the one") {
		t.Fatalf("a resume on a changed label: %v, want a refusal naming the data", err)
	}
	if _, err := newBlobTrainer(t, c, dir, true).Fit(context.Background(), blobSplits(t)); err != nil {
		t.Fatalf("a resume on the same data: %v", err)
	}
}

// The console writes a bool or list field as its text (resume=false), not
// as the bytes zerolog hands over ([102 97 108 115 101]).
func TestConsoleWritesBoolsAsText(t *testing.T) {
	var b bytes.Buffer
	log := zerolog.New(ConsoleWriter(&b))
	log.Info().Bool("resume", false).Ints("sizes", []int{1, 2}).Float64("lr", 0.049720771772545594).Msg("trial started")
	if got := b.String(); !strings.Contains(got, "resume=false") || !strings.Contains(got, "sizes=[1,2]") || !strings.Contains(got, "lr=0.04972") {
		t.Fatalf("console line %q", got)
	}
}

// A checkpoint of an older Kiln recorded no file sizes: a resume still
// drops the records written after it (by step), so that metrics.jsonl holds
// each record once, as an uninterrupted run's does.
func TestResumeOfAnOlderCheckpointDropsTheRecordsAfterIt(t *testing.T) {
	c, splits, straight, dir := stoppedBesideStraight(t)
	st := asOlderCheckpoint(t, dir)
	// The killed third epoch's records: whole ones past the checkpoint's step.
	f, err := os.OpenFile(filepath.Join(dir, MetricsFile), os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, `{"step":%d,"epoch":2.2,"split":"val","loss":1,"lr":0.01}`+"\n", st.Step+5)
	f.Close()
	resumeLikeStraight(t, c, splits, dir, straight)
}

// An older Kiln's run killed after its test pass, before summary.json: the
// test record, written at the last checkpoint's step, goes with the resume
// that tests again, not twice into metrics.jsonl.
func TestResumeOfAnOlderCheckpointKilledInItsTest(t *testing.T) {
	c, splits, straight, _ := stoppedBesideStraight(t)
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(straight)); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, SummaryFile))
	asOlderCheckpoint(t, dir)
	resumeLikeStraight(t, c, splits, dir, straight)
}

// metrics.jsonl is appended a line at a time: rewritten whole at each
// record, a run with a record every step wrote gigabytes for a few
// megabytes of records (its writes grew with the square of its steps).
func TestMetricsAreAppended(t *testing.T) {
	dir := t.TempDir()
	r, err := OpenRunDir(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	inode := func() uint64 {
		fi, err := os.Stat(filepath.Join(dir, MetricsFile))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	if err := r.Record(MetricsRecord{Step: 1, Split: "train", Loss: 1}); err != nil {
		t.Fatal(err)
	}
	first := inode()
	if err := r.Record(MetricsRecord{Step: 2, Split: "train", Loss: 0.5}); err != nil {
		t.Fatal(err)
	}
	if inode() != first {
		t.Fatal("metrics.jsonl was replaced, not appended to")
	}
	if recs := readJSONLines[MetricsRecord](t, filepath.Join(dir, MetricsFile)); len(recs) != 2 || recs[1].Step != 2 {
		t.Fatalf("records %+v", recs)
	}
	if sizes, err := r.appendedSizes(); err != nil || sizes[MetricsFile] != fileSize(t, filepath.Join(dir, MetricsFile)) {
		t.Fatalf("the checkpoint's size of metrics.jsonl %d, on disk %d (%v)", sizes[MetricsFile], fileSize(t, filepath.Join(dir, MetricsFile)), err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// --stop-after-epoch at or before the checkpoint's epoch, on resume, stops
// at once, as Lightning's max_epochs does: it trained the rest of the run.
func TestResumePastStopAfterEpochTrainsNothing(t *testing.T) {
	c := blobConfig()
	dir := stoppedAfter(t, c, 2)
	before, err := ReadRunState(filepath.Join(dir, CheckpointFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, stop := range []int{2, 1} {
		c.StopAfterEpoch = stop
		sum, err := newBlobTrainer(t, c, dir, true).Fit(context.Background(), blobSplits(t))
		if err != nil {
			t.Fatal(err)
		}
		st, err := ReadRunState(filepath.Join(dir, CheckpointFile))
		if err != nil {
			t.Fatal(err)
		}
		if sum.StopReason != "stop-after-epoch" || sum.EpochsRun != 2 || st.Step != before.Step {
			t.Fatalf("--stop-after-epoch %d resumed at epoch 2: stop %q after %d epochs, checkpoint at step %d (was %d)",
				stop, sum.StopReason, sum.EpochsRun, st.Step, before.Step)
		}
	}
}

// A run file that cannot be made at the start (here the event file, whose
// name takes the path past PATH_MAX) stops the run before its first step:
// it stopped at the first record, an epoch later, the epoch lost.
func TestRunFileThatCannotBeMadeStopsBeforeTraining(t *testing.T) {
	dir := t.TempDir()
	// 4065 bytes: config.yaml's temporary file (26 bytes) fits under
	// PATH_MAX, the event file's name (31 and the host's) does not.
	for len(dir) < 4065 {
		dir = filepath.Join(dir, strings.Repeat("d", min(200, 4065-len(dir)-1)))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := blobConfig()
	tr := newBlobTrainer(t, c, dir, false)
	var steps int
	tr.Callbacks.OnValidation = func(MetricsRecord) bool { steps++; return false }
	_, err := tr.Fit(context.Background(), blobSplits(t))
	if err == nil || !strings.Contains(err.Error(), "file name too long") {
		t.Fatalf("Fit in a directory where the event file cannot be made: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, MetricsFile)); len(b) > 0 || steps > 0 {
		t.Fatalf("the run trained before it stopped: metrics.jsonl %q", b)
	}
}
