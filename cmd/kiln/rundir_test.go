package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/trainer"
)

// Issue 12, item 2: a second kiln train into a directory in use is refused,
// naming the process that holds it, and the first run is unharmed.
func TestSecondTrainIntoABusyRunDirIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	first, args, firstErr := startLongTrain(t, dir)
	waitFor(t, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, trainer.LockFile))
		return strings.TrimSpace(string(b)) == strconv.Itoa(first.Process.Pid)
	})
	for _, resume := range []bool{false, true} {
		second := args
		if resume {
			second = append(second[:len(second):len(second)], "--resume")
		}
		r := kiln(t, "", second...)
		want := "pid " + strconv.Itoa(first.Process.Pid)
		if r.code == 0 || !strings.Contains(r.stderr, "in use by another Kiln process ("+want) {
			t.Fatalf("second run (resume %v): exit %d, want a refusal naming %s:\n%s", resume, r.code, want, r.stderr)
		}
	}
	// The first still runs; Ctrl-C ends it with its checkpoint, and the lock
	// goes with it: a resume then gets as far as the configuration check.
	first.Process.Signal(os.Interrupt)
	if err := first.Wait(); err == nil || first.ProcessState.ExitCode() != 130 {
		t.Fatalf("first run: %v\n%s", err, firstErr.String())
	}
	r := kiln(t, "", append(args[:len(args):len(args)], "--resume", "--lr", "0.5")...)
	if r.code == 0 || !strings.Contains(r.stderr, "the configuration differs") {
		t.Fatalf("resume after the first ended: exit %d\n%s", r.code, r.stderr)
	}
}

// A dropped SSH session's SIGHUP ends a training as Ctrl-C does, with its
// checkpoint: it killed the run, losing up to an epoch.
func TestHangUpSavesACheckpoint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	run, _, stderr := startLongTrain(t, dir)
	waitFor(t, func() bool {
		_, err := os.Stat(filepath.Join(dir, trainer.MetricsFile))
		return err == nil
	})
	run.Process.Signal(syscall.SIGHUP)
	if err := run.Wait(); err == nil || run.ProcessState.ExitCode() != 129 {
		t.Fatalf("after SIGHUP: %v (exit %d), want exit 129 (128 + SIGHUP)\n%s", err, run.ProcessState.ExitCode(), stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, trainer.CheckpointFile)); err != nil {
		t.Errorf("no checkpoint after SIGHUP: %v", err)
	}
	// Under nohup SIGHUP stays ignored: the training goes on to its end.
	nohup, err := exec.LookPath("nohup")
	if err != nil {
		t.Skipf("no nohup to check that a run started under it ignores SIGHUP: %v", err)
	}
	dir = filepath.Join(t.TempDir(), "nohup")
	under := exec.Command(nohup, append(append([]string{kilnBin}, faultArgs(faultCSV(t), dir)...), "--epochs", "20")...)
	var underErr bytes.Buffer
	under.Stdout, under.Stderr = new(bytes.Buffer), &underErr
	if err := under.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { under.Process.Kill() })
	waitFor(t, func() bool { // training, its signals set
		_, err := os.Stat(filepath.Join(dir, trainer.MetricsFile))
		return err == nil
	})
	under.Process.Signal(syscall.SIGHUP)
	if err := under.Wait(); err != nil {
		t.Errorf("a run under nohup, sent SIGHUP: %v, want it to finish\n%s", err, underErr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, trainer.SummaryFile)); err != nil {
		t.Errorf("the run under nohup did not finish: %v", err)
	}
}

// startLongTrain starts a training of 400 epochs into dir, to be stopped
// (killed at the test's end), and returns it, its arguments and its stderr.
func startLongTrain(t *testing.T, dir string) (*exec.Cmd, []string, *bytes.Buffer) {
	args := faultArgs(faultCSV(t), dir)
	args = append(args[:len(args):len(args)], "--epochs", "400", "--no-visuals")
	cmd := exec.Command(kilnBin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, args, &stderr
}

// A training whose console is a pipe that its reader closed (tee, killed by
// the same Ctrl-C; head) stops at its next log line as at SIGHUP, with its
// checkpoint, and --resume continues it: SIGPIPE killed it there, before
// the checkpoint, losing up to an epoch.
func TestClosedConsolePipeSavesACheckpoint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	args := longFirstEpoch(t, dir)
	cmd := exec.Command(kilnBin, args...)
	console, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, func() bool { // training: a step's record written
		fi, err := os.Stat(filepath.Join(dir, trainer.MetricsFile))
		return err == nil && fi.Size() > 0
	})
	console.Close() // the reader goes; the next line raises SIGPIPE
	// Its last words (how to resume) raise SIGPIPE again once its handler
	// is gone: status 141 either way, as a shell reports it.
	err = cmd.Wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if err == nil || ws.ExitStatus() != 141 && !(ws.Signaled() && ws.Signal() == syscall.SIGPIPE) {
		t.Fatalf("console pipe closed: %v (exit %d), want 141 (128 + SIGPIPE) after a checkpoint", err, cmd.ProcessState.ExitCode())
	}
	if _, err := os.Stat(filepath.Join(dir, trainer.CheckpointFile)); err != nil {
		t.Fatalf("no checkpoint after the console's pipe closed: %v", err)
	}
	r := kiln(t, "", "train", "--run-dir", dir, "--resume", "--epochs", "3")
	if r.code != 2 || !strings.Contains(r.stderr, "epochs") {
		t.Fatalf("resume (epochs changed, refused at the checkpoint): exit %d\n%s", r.code, r.stderr)
	}
}

// A second Ctrl-C ends a training at once, as a kill would (every file it
// writes survives one), where a stuck checkpoint write (here a rename held
// 6 s by strace) kept it running: the second was ignored.
func TestSecondInterruptStopsAtOnce(t *testing.T) {
	cmd, pid, stderr := startHeldCheckpointTrain(t, filepath.Join(t.TempDir(), "run"), 6000000)
	syscall.Kill(pid, syscall.SIGINT)   // the checkpoint starts, its rename held
	time.Sleep(1500 * time.Millisecond) // past sameStop: a second stop, not a repeat
	syscall.Kill(pid, syscall.SIGINT)
	cmd.Wait() // strace holds even the exit until the rename's delay ends
	if s := stderr.String(); !strings.Contains(s, "again: stopped at once") || strings.Contains(s, "checkpoint written") {
		t.Fatalf("a second Ctrl-C during a held checkpoint did not end the run there:\n%s", s)
	}
}

// A run interrupted in its first epoch has no weights file but a
// checkpoint: kiln export --run says to take it with --weights, and does
// (it said the weights did not fit, naming the model's flags).
func TestExportOfARunStoppedInItsFirstEpoch(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	args := longFirstEpoch(t, dir)
	cmd := exec.Command(kilnBin, args...)
	startUntilAStep(t, cmd, dir)
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	out := filepath.Join(filepath.Dir(dir), "m.onnx")
	ckpt := filepath.Join(dir, trainer.CheckpointFile)
	if r := kiln(t, "", "export", "--run", dir, "--out", out); r.code == 0 || !strings.Contains(r.stderr, "--weights "+ckpt) {
		t.Fatalf("export of a run stopped in its first epoch: exit %d\n%s", r.code, r.stderr)
	}
	if r := kiln(t, "", "export", "--run", dir, "--weights", ckpt, "--out", out); r.code != 0 || !strings.Contains(r.stderr, "training checkpoint") {
		t.Fatalf("export of its checkpoint: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatal(err)
	}
}

// startHeldCheckpointTrain starts a long training under strace, whose
// checkpoint's rename is held for delayMicros, and returns it once it
// trains, with kiln's pid (kiln.lock's) to signal.
func startHeldCheckpointTrain(t *testing.T, dir string, delayMicros int) (*exec.Cmd, int, *bytes.Buffer) {
	strace := killingStrace(t)
	args := longFirstEpoch(t, dir)
	cmd := exec.Command(strace, append([]string{"-f", "-qq", "-o", "/dev/null", "-e", "trace=renameat,renameat2",
		"-e", fmt.Sprintf("inject=renameat,renameat2:delay_enter=%d", delayMicros), "-P", filepath.Join(dir, trainer.CheckpointFile), kilnBin}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	startUntilAStep(t, cmd, dir)
	b, err := os.ReadFile(filepath.Join(dir, "kiln.lock"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("kiln.lock: %q", b)
	}
	return cmd, pid, &stderr
}

// GNU timeout sends SIGTERM to the process and then to its group: the
// repeat is the same stop, which writes its checkpoint (held here 2 s by
// strace) and exits 143, not a second one that ends the process first.
func TestRepeatedSignalIsOneStop(t *testing.T) {
	cmd, pid, stderr := startHeldCheckpointTrain(t, filepath.Join(t.TempDir(), "run"), 2000000)
	syscall.Kill(pid, syscall.SIGTERM)
	time.Sleep(100 * time.Millisecond)
	syscall.Kill(pid, syscall.SIGTERM)
	cmd.Wait()
	if s := stderr.String(); strings.Contains(s, "stopped at once") || !strings.Contains(s, "checkpoint written") {
		t.Fatalf("SIGTERM twice, 0.1 s apart: not one stop with its checkpoint\n%s", s)
	}
}

// startUntilAStep starts cmd, a training into dir, and returns once a step
// is recorded (the run trains, its signals set); the test's end kills it.
func startUntilAStep(t *testing.T, cmd *exec.Cmd, dir string) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, func() bool {
		fi, err := os.Stat(filepath.Join(dir, trainer.MetricsFile))
		return err == nil && fi.Size() > 0
	})
}

// longFirstEpoch is a training whose first epoch lasts many seconds (MNIST
// a sample a step) that records every step: a stop soon after it starts
// comes before the epoch's end and its checkpoint.
func longFirstEpoch(t *testing.T, dir string) []string {
	t.Helper()
	needMNIST(t)
	return []string{"train", "--dataset", "mnist", "--model", "mlp", "--hidden", "16", "--epochs", "2", "--batch", "1",
		"--device", "cpu", "--threads", "1", "--no-visuals", "--log-every", "1", "--run-dir", dir}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("timed out")
}

// Issue 12, item 3: --run-dir . beside a user's own config.yaml is refused
// by name, and nothing there changes.
func TestRunDirOfTheUsersOwnFilesIsRefused(t *testing.T) {
	csv := faultCSV(t)
	dir := t.TempDir()
	files := map[string]string{"config.yaml": "model: mine\n", "notes.md": "my notes\n"}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := kiln(t, dir, faultArgs(csv, ".")...)
	if r.code == 0 || !strings.Contains(r.stderr, "config.yaml exists and was not written by a Kiln run") {
		t.Fatalf("exit %d, want a refusal naming config.yaml:\n%s", r.code, r.stderr)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(files) {
		t.Fatalf("the directory changed: %v", entries)
	}
	for name, text := range files {
		if b, _ := os.ReadFile(filepath.Join(dir, name)); string(b) != text {
			t.Fatalf("%s now holds %q", name, b)
		}
	}
}

// Issue 12, item 4: --resume of a finished run exits 0 and changes nothing;
// of a run killed before its first checkpoint, it starts from step 0 and
// says so.
func TestResumeOfAFinishedRunChangesNothing(t *testing.T) {
	csv := faultCSV(t)
	dir := filepath.Join(t.TempDir(), "run")
	mustRun(t, "", faultArgs(csv, dir)...)
	before := dirHashes(t, dir)
	r := mustRun(t, "", append(faultArgs(csv, dir), "--resume")...)
	if !strings.Contains(r.stdout, "has finished") || !strings.Contains(r.stdout, "test accuracy") {
		t.Fatalf("resume of a finished run printed:\n%s", r.stdout)
	}
	if after := dirHashes(t, dir); after != before {
		t.Fatalf("resume of a finished run changed its files:\n%s\nwas\n%s", after, before)
	}
}

func TestResumeBeforeTheFirstCheckpointStartsOver(t *testing.T) {
	csv, dir := killedAtFirstChange(t)
	r := mustRun(t, "", append(faultArgs(csv, dir), "--resume")...)
	if !strings.Contains(r.stderr, "starting from step 0") {
		t.Fatalf("resume did not say it starts over:\n%s", r.stderr)
	}
}

// A finished run whose checkpoint was deleted (a finished run does not
// need it) is finished: --resume, with other settings too, changes nothing,
// and a new run there is refused. Its results were removed and trained
// again as if the run had been killed before its first checkpoint.
func TestFinishedRunWithoutItsCheckpointIsKept(t *testing.T) {
	csv := faultCSV(t)
	dir := filepath.Join(t.TempDir(), "run")
	mustRun(t, "", faultArgs(csv, dir)...)
	if err := os.Remove(filepath.Join(dir, trainer.CheckpointFile)); err != nil {
		t.Fatal(err)
	}
	before := dirHashes(t, dir)
	if r := mustRun(t, "", append(faultArgs(csv, dir), "--resume")...); !strings.Contains(r.stdout, "has finished") {
		t.Errorf("resume of the finished run printed:\n%s", r.stdout)
	}
	if r := kiln(t, "", append(faultArgs(csv, dir), "--seed", "9")...); r.code == 0 || !strings.Contains(r.stderr, "already holds a run") {
		t.Errorf("a new run into the finished run's directory: exit %d\n%s", r.code, r.stderr)
	}
	if after := dirHashes(t, dir); after != before {
		t.Fatalf("the finished run's files changed:\n%s\nwas\n%s", after, before)
	}
}

// `--run-dir DIR --resume` alone, where DIR's run stopped before writing
// config.yaml (a full disk, a kill), is refused: it trained the defaults (all
// of MNIST, 3 epochs) in the run's place. The first command's flags given
// again resume it.
func TestBareResumeWithoutConfigIsRefused(t *testing.T) {
	csv, dir := killedAtFirstChange(t)
	for _, more := range [][]string{nil, {"--no-visuals", "--stop-after-epoch", "1", "--threads", "1"}} { // settings a resume may change are none of the run's
		r := kiln(t, "", append([]string{"train", "--run-dir", dir, "--resume"}, more...)...)
		if r.code != 2 || !strings.Contains(r.stderr, "has no config.yaml") {
			t.Errorf("bare --resume %v: exit %d\n%s", more, r.code, r.stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, trainer.ConfigFile)); !os.IsNotExist(err) {
		t.Errorf("the refused resume wrote a config.yaml: %v", err)
	}
	mustRun(t, "", append(faultArgs(csv, dir), "--resume")...)
}

// killedAtFirstChange is the fault tests' run killed at its first change to
// its run directory (before config.yaml): its CSV and directory.
func killedAtFirstChange(t *testing.T) (csv, dir string) {
	csv, dir = faultCSV(t), filepath.Join(t.TempDir(), "run")
	if r := runWithFault(t, faultKiln(t), "kill:1", faultArgs(csv, dir)...); !r.killed {
		t.Fatalf("not killed: exit %d\n%s", r.code, r.stderr)
	}
	return csv, dir
}

// dirHashes lists a directory's files with their hashes (kiln.lock aside:
// it holds the pid of the last process that opened the run).
func dirHashes(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || e.Name() == trainer.LockFile {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := e.Info()
		b.WriteString(e.Name() + " " + fi.ModTime().String() + " ")
		sum := sha256.Sum256(data)
		b.WriteString(string(sum[:4]) + "\n")
	}
	return b.String()
}

// Issue 12, item 2, for tunes: a tune directory in use is refused too, and
// a tune that never started leaves no directory behind.
func TestTuneIntoABusyDirIsRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tune")
	lock, err := trainer.LockDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	want := "in use by another Kiln process (pid " + strconv.Itoa(os.Getpid())
	for _, args := range [][]string{
		{"tune", "--param", "lr=0.1,0.01", "--run-dir", dir},
		{"tune", "--resume", "--run-dir", dir},
	} {
		if r := kiln(t, "", args...); r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Fatalf("kiln %v: exit %d, want %q:\n%s", args, r.code, want, r.stderr)
		}
	}
	fresh := filepath.Join(t.TempDir(), "never")
	if r := kiln(t, "", "tune", "--param", "lr=0.1,0.01", "--strategy", "nope", "--run-dir", fresh); r.code == 0 {
		t.Fatal("a bad --strategy was accepted")
	}
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Fatalf("a tune that never started left %s: %v", fresh, err)
	}
}

// A model whose recipe differs from the defaults (gmlp: AdamW, no Nesterov)
// resumes as finished too: the run's config.yaml is read over that recipe,
// not over the defaults, so nothing seems to differ.
func TestResumeOfAFinishedGMLPRun(t *testing.T) {
	dir := t.TempDir()
	args := []string{"train", "--dataset", "mnist", "--model", "gmlp", "--hidden", "16", "--depth", "1", "--subset", "0.01",
		"--epochs", "1", "--device", "cpu", "--run-dir", "r"}
	mustRun(t, dir, args...)
	for _, resume := range [][]string{{"train", "--run-dir", "r", "--resume"}, append(args, "--resume")} {
		if r := mustRun(t, dir, resume...); !strings.Contains(r.stdout, "has finished") {
			t.Errorf("%s printed:\n%s", strings.Join(resume, " "), r.stdout)
		}
	}
}

// kiln lr-find does not write into a run directory (a live run's lock is
// not its to ignore), before any work.
func TestLRFindRefusesARunDirectory(t *testing.T) {
	run := tinyRun(t)
	r := kiln(t, workDir, "lr-find", "--run-dir", run, "--steps", "10")
	if r.code != 2 || !strings.Contains(r.stderr, "holds a training run") {
		t.Errorf("lr-find --run-dir RUN: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(run, "lr_find.csv")); !os.IsNotExist(err) {
		t.Errorf("lr-find wrote into the run: %v", err)
	}
}

// A resume on other threads (or another ISA level, architecture or device)
// says that the run goes on in other last bits; one on the same says
// nothing of it (the run directory recorded nothing of the machine).
func TestResumeElsewhereSaysSo(t *testing.T) {
	dir := t.TempDir()
	args := []string{"train", "--dataset", "csv", "--data-dir", faultCSV(t), "--model", "mlp", "--hidden", "16", "--epochs", "3",
		"--device", "cpu", "--no-visuals", "--stop-after-epoch", "1"}
	for _, threads := range []string{"1", "2"} {
		run := filepath.Join(dir, "t"+threads)
		mustRun(t, dir, append(args, "--threads", "1", "--run-dir", run)...)
		r := mustRun(t, dir, "train", "--run-dir", run, "--resume", "--threads", threads, "--stop-after-epoch", "2")
		if said := strings.Contains(r.stderr, "this resume runs on"); said != (threads != "1") {
			t.Errorf("resumed on %s threads after 1: said so %v\n%s", threads, said, r.stderr)
		}
	}
}

// A run file that is a symbolic link (train.log kept elsewhere) is cut back
// at a resume to the checkpoint's size of the file, not of the link (its
// text's length: the log before the resume was lost).
func TestResumeKeepsALinkedLog(t *testing.T) {
	dir := t.TempDir()
	run, elsewhere := filepath.Join(dir, "run"), filepath.Join(dir, "elsewhere.log")
	args := append(faultArgs(faultCSV(t), run), "--no-visuals", "--epochs", "3")
	mustRun(t, dir, append(args, "--stop-after-epoch", "1")...)
	if err := os.Rename(filepath.Join(run, trainer.LogFile), elsewhere); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(elsewhere, filepath.Join(run, trainer.LogFile)); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(elsewhere)
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, dir, "train", "--run-dir", run, "--resume", "--stop-after-epoch", "2")
	mustRun(t, dir, "train", "--run-dir", run, "--resume")
	// The lines up to the first checkpoint stay (those after it are cut,
	// as in any resume).
	lines := bytes.SplitAfter(before, []byte("\n"))
	head := bytes.Join(lines[:len(lines)/2], nil)
	after, err := os.ReadFile(elsewhere)
	if err != nil || !bytes.HasPrefix(after, head) || len(after) <= len(before) {
		t.Fatalf("the linked train.log after two resumes: %d bytes (%v), want its first %d kept and more:\n%.300s", len(after), err, len(head), after)
	}
}
