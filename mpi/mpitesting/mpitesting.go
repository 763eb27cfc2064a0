// Package mpitesting runs real MPI ranks for tests: it finds mpirun, or skips
// the test saying why (fails instead with REQUIRE_MPI=1, as CI sets), and runs
// a program under it on this machine with a time limit, so a hung collective
// fails the test instead of stalling it.
package mpitesting

import (
	"context"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// MPIRun returns mpirun's path, or skips t (fails it with REQUIRE_MPI=1) when
// MPI cannot be run or built against here.
func MPIRun(t testing.TB) string {
	t.Helper()
	missing := func(what string) {
		if os.Getenv("REQUIRE_MPI") == "1" {
			t.Fatalf("REQUIRE_MPI=1 but %s (Debian: apt-get install openmpi-bin libopenmpi-dev)", what)
		}
		t.Skipf("skipping the tests that run MPI ranks: %s (Debian: apt-get install openmpi-bin libopenmpi-dev)", what)
	}
	mpirun, err := exec.LookPath("mpirun")
	if err != nil {
		missing("mpirun is not on PATH")
	}
	if err := exec.Command("pkg-config", "--exists", "ompi-c").Run(); err != nil {
		missing("pkg-config finds no ompi-c (Open MPI's headers)")
	}
	return mpirun
}

// Run runs prog with args as np ranks on this machine (as root too, more
// ranks than cores allowed) and returns their combined output. It fails t
// when the job is still running after limit.
func Run(t testing.TB, mpirun string, np int, limit time.Duration, prog string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, mpirun, append([]string{"--allow-run-as-root", "--oversubscribe",
		"-np", strconv.Itoa(np), prog}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("mpirun -np %d %s %v still running after %v; output:\n%s", np, prog, args, limit, out)
	}
	return string(out), err
}
