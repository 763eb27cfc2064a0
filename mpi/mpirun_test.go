package mpi

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/mpi/mpitesting"
)

// TestUnderMPIRun runs internal/mpitest, built with and without the mpi
// tag, as real ranks under mpirun: the collectives, reproducible sums, a
// rank killed mid all-reduce, and a build without MPI refusing to start.
// Without mpirun and Open MPI's headers it skips, unless REQUIRE_MPI=1.
func TestUnderMPIRun(t *testing.T) {
	mpirun := mpitesting.MPIRun(t)
	dir := t.TempDir()
	withMPI := buildMPITest(t, filepath.Join(dir, "mpitest-mpi"), "-tags", "mpi")
	withoutMPI := buildMPITest(t, filepath.Join(dir, "mpitest"))

	t.Run("np2", func(t *testing.T) { checkRanks(t, mpirun, withMPI, 2) })
	t.Run("np3 reproducible", func(t *testing.T) {
		// Three ranks: the first sum whose last bits depend on the order.
		first := checkRanks(t, mpirun, withMPI, 3)
		second := checkRanks(t, mpirun, withMPI, 3)
		if !slices.Equal(first, second) {
			t.Errorf("sums differ run to run:\n%s\n%s", strings.Join(first, "\n"), strings.Join(second, "\n"))
		}
	})
	t.Run("killed rank np2", func(t *testing.T) { checkKilledRank(t, mpirun, withMPI, 2) })
	t.Run("killed rank np3", func(t *testing.T) { checkKilledRank(t, mpirun, withMPI, 3) })
	t.Run("built without MPI", func(t *testing.T) {
		out, err := runMPI(t, mpirun, 2, withoutMPI, "init")
		if err == nil || strings.Count(out, NotBuiltMessage) == 0 || strings.Contains(out, "initialized") {
			t.Errorf("a build without MPI under mpirun -np 2: %v, want refusal saying %q; output:\n%s", err, NotBuiltMessage, out)
		}
	})
}

func buildMPITest(t *testing.T, out string, flags ...string) string {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	args := append(append([]string{"build", "-o", out}, flags...), "./internal/mpitest")
	cmd := exec.Command(goTool, args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=1") // the mpi build is cgo, whatever the test's build is
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, msg)
	}
	return out
}

// runMPI runs prog under mpirun with np ranks on this machine, as root
// where the tests run as root (CI does), and ends it after a minute at most.
func runMPI(t *testing.T, mpirun string, np int, prog string, args ...string) (string, error) {
	t.Helper()
	return mpitesting.Run(t, mpirun, np, time.Minute, prog, args...)
}

// checkRanks runs `mpitest check` and returns the sums' hashes, which every
// rank must have printed identically.
func checkRanks(t *testing.T, mpirun, prog string, np int) []string {
	out, err := runMPI(t, mpirun, np, prog, "check")
	if err != nil {
		t.Fatalf("mpirun -np %d: %v\n%s", np, err, out)
	}
	ranks := map[int]bool{}
	sums := map[string][]int{} // a sum line without its rank, and the ranks that printed it
	for _, line := range lines(out) {
		var r, size, local, localSize int
		if n, _ := fmt.Sscanf(line, "rank %d size %d local %d %d", &r, &size, &local, &localSize); n == 4 {
			// One machine: the local ranks are the ranks.
			if size != np || local != r || localSize != np {
				t.Errorf("%q: want size %d, local rank = rank, local size %d", line, np, np)
			}
		}
		if _, err := fmt.Sscanf(line, "rank %d ok", &r); err == nil {
			ranks[r] = true
		}
		if strings.HasPrefix(line, "rank ") && strings.Contains(line, " awkward ") {
			fmt.Sscanf(line, "rank %d", &r)
			_, sum, _ := strings.Cut(line, " awkward ")
			sums[sum] = append(sums[sum], r)
		}
	}
	if len(ranks) != np {
		t.Errorf("%d of %d ranks ended ok; output:\n%s", len(ranks), np, out)
	}
	var keys []string
	for sum, rs := range sums {
		if len(rs) != np {
			t.Errorf("ranks %v alone got %q: the ranks' sums differ", rs, sum)
		}
		keys = append(keys, sum)
	}
	if len(keys) == 0 {
		t.Errorf("no sums printed; output:\n%s", out)
	}
	slices.Sort(keys)
	return keys
}

// checkKilledRank: the last rank SIGKILLs itself while the others wait in
// an all-reduce; mpirun must end them soon, fail, and name the dead rank.
func checkKilledRank(t *testing.T, mpirun, prog string, np int) {
	start := time.Now()
	out, err := runMPI(t, mpirun, np, prog, "kill")
	took := time.Since(start)
	t.Logf("mpirun ended %v after the start:\n%s", took.Round(time.Millisecond), out)
	if err == nil {
		t.Error("mpirun exited 0 with a rank killed")
	}
	if took > 30*time.Second {
		t.Errorf("mpirun took %v to end, want under 30 s", took)
	}
	dead := fmt.Sprintf("process rank %d", np-1)
	if !strings.Contains(out, dead) || !strings.Contains(out, "signal 9") {
		t.Errorf("mpirun's message does not name %s and signal 9", dead)
	}
	survivors := 0
	for _, line := range lines(out) {
		var r, pid int
		if n, _ := fmt.Sscanf(line, "rank %d pid %d all-reducing", &r, &pid); n == 2 {
			if !endsSoon(pid) {
				t.Errorf("rank %d (pid %d) still runs 5 s after mpirun ended", r, pid)
			}
			survivors++
		}
	}
	if survivors != np-1 {
		t.Errorf("%d of %d surviving ranks reached the all-reduce", survivors, np-1)
	}
}

// endsSoon reports whether process pid is gone or a zombie (dead, waiting
// for a parent to reap it: mpirun may exit first and leave that to init)
// within 5 s.
func endsSoon(pid int) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if errors.Is(err, os.ErrNotExist) {
			return true
		}
		if i := strings.LastIndexByte(string(stat), ')'); err == nil && i >= 0 && strings.HasPrefix(string(stat[i:]), ") Z") {
			return true
		}
	}
	return false
}

func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
