package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/mpi/mpitesting"
	"github.com/kiln-ml/kiln/trainer"
)

// Issue 18's faults under real mpirun ranks: one of two ranks is SIGKILLed
// in the middle of an epoch. The job must end within 30 s, non-zero, with
// mpirun naming the dead rank, and the run directory's checkpoint (written
// by rank 0 at the epoch before) must resume in one process, without mpirun,
// to the end of the run. Rank 1 is killed first (rank 0, which writes the
// run directory, lives on until mpirun ends it), then rank 0 itself.
func TestDataParallelFaults(t *testing.T) {
	mpirun := mpitesting.MPIRun(t)
	needMNIST(t)
	if runtime.GOOS != "linux" {
		t.Skip("finds a rank's process through /proc, which only Linux has")
	}
	bin := kilnMPI(t)
	for _, rank := range []int{1, 0} {
		t.Run(fmt.Sprintf("rank %d killed", rank), func(t *testing.T) { ddpKillRank(t, mpirun, bin, rank) })
	}
	t.Run("disk full", func(t *testing.T) { ddpDiskFull(t, mpirun) })
	t.Run("rank 1 panics", func(t *testing.T) { ddpPanic(t, mpirun) })
}

// ddpPanic: a rank that panics ends the job, naming itself and the panic,
// rather than waiting in MPI_Finalize for ranks that wait in a collective
// for it (the job hung for good).
func ddpPanic(t *testing.T, mpirun string) {
	bin := kilnWithTags(t, "mpi,faultinject")
	t.Setenv("KILN_FAULT", "panicrank:1")
	start := time.Now()
	out, err := runMPIErr(t, mpirun, 2, bin, append(ddpFaultArgs(filepath.Join(t.TempDir(), "run")), "--epochs", "1")...)
	if err == nil || !strings.Contains(out, "rank 1 of 2: panic: KILN_FAULT=panicrank:1") || time.Since(start) > time.Minute {
		t.Errorf("rank 1 panicking: %v after %v, want the job ended naming the rank and the panic; output:\n%s", err, time.Since(start), out)
	}
}

// ddpDiskFull: a full disk under mpirun says how to go on, as one process
// does (the message was printed and the job aborted before the hint was
// added), with the mpirun command.
func ddpDiskFull(t *testing.T, mpirun string) {
	bin := kilnWithTags(t, "mpi,faultinject")
	run := filepath.Join(t.TempDir(), "full")
	t.Setenv("KILN_FAULT", "enospc:3") // mpirun passes its environment to local ranks
	out, err := runMPIErr(t, mpirun, 2, bin, append(ddpFaultArgs(run), "--epochs", "1", "--stop-after-epoch", "1")...)
	if err == nil || !strings.Contains(out, "is full") || !strings.Contains(out, "free some space, then mpirun -np 2 kiln train --run-dir "+run+" --resume") {
		t.Errorf("a full disk under mpirun: %v, want the message and how to resume; output:\n%s", err, out)
	}
}

// ddpFaultArgs trains mlp on all of MNIST for 3 epochs: about a second an
// epoch at one thread a rank on two cores, so a kill 300 ms after the first
// checkpoint lands inside the second epoch, well before the run could end.
func ddpFaultArgs(run string) []string {
	return []string{"train", "--model", "mlp", "--dataset", "mnist", "--epochs", "3", "--batch", "64",
		"--seed", "1", "--device", "cpu", "--threads", "1", "--no-visuals", "--run-dir", run}
}

func ddpKillRank(t *testing.T, mpirun, bin string, rank int) {
	run := filepath.Join(t.TempDir(), "run")
	job := startJob(t, mpirun, bin, ddpFaultArgs(run)...)
	defer job.stop()
	checkpoint := filepath.Join(run, trainer.CheckpointFile)
	for deadline := time.Now().Add(2 * time.Minute); ; {
		if _, err := os.Stat(checkpoint); err == nil {
			break
		}
		if job.ended() || time.Now().After(deadline) {
			t.Fatalf("no checkpoint appeared; output:\n%s", job.stop())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	pid, err := rankPID(bin, run, rank)
	if err != nil {
		t.Fatalf("%v; output:\n%s", err, job.stop())
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	select {
	case <-job.exited:
	case <-time.After(30 * time.Second):
		t.Fatalf("mpirun still running 30 s after rank %d was killed; output:\n%s", rank, job.stop())
	}
	took := time.Since(killed)
	out := job.stop()
	t.Logf("mpirun ended %v after the kill of rank %d (pid %d)", took.Round(time.Millisecond), rank, pid)
	// Open MPI 4 and 5 alike: "mpirun noticed that process rank 1 with PID
	// 1234 on node vm exited on signal 9 (Killed)." (prterun in 5).
	named := regexp.MustCompile(fmt.Sprintf(`process rank %d with PID \d+ on node \S+ exited on signal 9`, rank))
	if job.err == nil || !named.MatchString(out) {
		t.Fatalf("mpirun: %v, want a failure naming rank %d killed by signal 9; output:\n%s", job.err, rank, out)
	}
	if _, err := os.Stat(filepath.Join(run, trainer.SummaryFile)); err == nil {
		t.Fatalf("the run finished before the kill: nothing was killed mid-run; output:\n%s", out)
	}
	resumeAlone(t, run)
}

// resumeAlone resumes run with kiln built without MPI, as one process, and
// checks that it went on from the checkpoint to the run's last epoch.
func resumeAlone(t *testing.T, run string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, kilnBin, append(ddpFaultArgs(run), "--resume")...).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "resumed from checkpoint") {
		t.Fatalf("one process resuming the killed run: %v\n%s", err, out)
	}
	plain := regexp.MustCompile("\x1b\\[[0-9;]*m").ReplaceAllString(string(out), "")
	t.Logf("one process: %s", regexp.MustCompile(`resumed from checkpoint.*`).FindString(plain))
	if s := readSummary(t, run); s.EpochsRun != 3 || s.TestAccuracy == nil {
		t.Errorf("resumed run: %d epochs run, test accuracy %v; want 3 and a test accuracy", s.EpochsRun, s.TestAccuracy)
	}
}

// mpiJob is an mpirun started in its own process group, so that whatever
// the test does the job's ranks do not outlive it.
type mpiJob struct {
	cmd    *exec.Cmd
	out    bytes.Buffer // written by exec's one copying goroutine, read after exited
	exited chan struct{}
	err    error // mpirun's, set before exited closes
	once   sync.Once
}

func startJob(t *testing.T, mpirun, prog string, args ...string) *mpiJob {
	t.Helper()
	j := &mpiJob{exited: make(chan struct{})}
	j.cmd = exec.Command(mpirun, append([]string{"--allow-run-as-root", "--oversubscribe", "-np", "2", prog}, args...)...)
	j.cmd.Stdout, j.cmd.Stderr = &j.out, &j.out
	j.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := j.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { j.err = j.cmd.Wait(); close(j.exited) }()
	return j
}

func (j *mpiJob) ended() bool {
	select {
	case <-j.exited:
		return true
	default:
		return false
	}
}

// stop kills what is left of the job's process group, waits for mpirun and
// returns its output.
func (j *mpiJob) stop() string {
	j.once.Do(func() { _ = syscall.Kill(-j.cmd.Process.Pid, syscall.SIGKILL) })
	<-j.exited
	return j.out.String()
}

// rankPID finds the process of one rank of the job training into run: Open
// MPI puts OMPI_COMM_WORLD_RANK (PMIX_RANK too) in each rank's environment,
// which /proc shows as it was at exec; the executable and the run directory
// on the command line keep processes of other tests out.
func rankPID(bin, run string, rank int) (int, error) {
	exe, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return 0, err
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	want := []byte("OMPI_COMM_WORLD_RANK=" + strconv.Itoa(rank) + "\x00")
	var found []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		proc := filepath.Join("/proc", e.Name())
		if link, _ := os.Readlink(filepath.Join(proc, "exe")); link != exe {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(proc, "cmdline"))
		environ, _ := os.ReadFile(filepath.Join(proc, "environ"))
		if bytes.Contains(cmdline, []byte("\x00"+run+"\x00")) && bytes.Contains(append([]byte{0}, environ...), append([]byte{0}, want...)) {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("want one process of rank %d of %s training into %s, found %v", rank, exe, run, found)
	}
	return found[0], nil
}

// kilnBuilds are the kiln binaries the data-parallel tests build, one per
// set of build tags.
var kilnBuilds sync.Map // tags → *kilnBuild

type kilnBuild struct {
	once     sync.Once
	bin, err string
}

// kilnWithTags builds kiln with these tags once per test binary, with go
// build, so without -race even under go test -race.
func kilnWithTags(t *testing.T, tags string) string {
	t.Helper()
	v, _ := kilnBuilds.LoadOrStore(tags, &kilnBuild{})
	b := v.(*kilnBuild)
	b.once.Do(func() {
		bin := filepath.Join(workDir, "kiln-"+strings.ReplaceAll(tags, ",", "-"))
		build := exec.Command(goTool(), "build", "-tags", tags, "-o", bin, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=1")
		if out, err := build.CombinedOutput(); err != nil {
			b.err = fmt.Sprintf("go build -tags %s: %v\n%s", tags, err, out)
			return
		}
		b.bin = bin
	})
	if b.bin == "" {
		t.Fatal(b.err)
	}
	return b.bin
}

// kilnMPI is kiln built with MPI.
func kilnMPI(t *testing.T) string { return kilnWithTags(t, "mpi") }
