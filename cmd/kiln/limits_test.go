package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A run in a cgroup with a memory limit (a container's, a Slurm job's) is
// checked against that limit: MemAvailable is the whole machine's, so a run
// that could not fit passed the check and the kernel killed it. The test
// makes a child of this process's cgroup-v1 memory cgroup (as root), limits
// it to 400 MiB and starts a training there that needs far more.
func TestMemoryCheckHonoursTheCgroupLimit(t *testing.T) {
	needMNIST(t)
	cg := childMemoryCgroup(t, 400<<20)
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", fmt.Sprintf(`echo $$ > %s/cgroup.procs && exec "$@"`, cg), "sh",
		kilnBin, "train", "--model", "cnn", "--batch", "256", "--epochs", "1", "--threads", "1", "--device", "cpu",
		"--run-dir", filepath.Join(dir, "run"))
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the cgroup's memory limit of 400 MiB, less the") || !strings.Contains(string(out), "use a smaller --batch") {
		t.Fatalf("a run needing ~1.9 GiB in a 400 MiB cgroup: %v\n%s", err, out)
	}
}

// Other processes in the cgroup count: a run the limit left no room for
// beside them (a notebook's kernel, a job's other steps) is refused; it was
// measured against the limit less its own memory, and the kernel killed a
// neighbour once it grew.
func TestMemoryCheckCountsTheCgroupsOtherProcesses(t *testing.T) {
	needMNIST(t)
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3 to hold memory beside the run")
	}
	cg := childMemoryCgroup(t, 600<<20)
	hold := exec.Command("sh", "-c", fmt.Sprintf(`echo $$ > %s/cgroup.procs && exec "$@"`, cg), "sh", python, "-c",
		`import time
b = bytearray(260 << 20)
b[::4096] = b"\x01" * len(range(0, len(b), 4096))
print("held", flush=True)
time.sleep(60)`)
	out, err := hold.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { hold.Process.Kill(); hold.Wait() }()
	if _, err := out.Read(make([]byte, 5)); err != nil {
		t.Fatalf("the process holding memory: %v", err)
	}
	run := exec.Command("sh", "-c", fmt.Sprintf(`echo $$ > %s/cgroup.procs && exec "$@"`, cg), "sh",
		kilnBin, "train", "--model", "cnn", "--subset", "0.01", "--batch", "64", "--epochs", "1", "--threads", "1", "--device", "cpu",
		"--no-visuals", "--run-dir", filepath.Join(t.TempDir(), "run"))
	b, err := run.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "MiB its processes hold") || !strings.Contains(string(b), "use a smaller --batch") {
		t.Fatalf("a run needing ~440 MiB in a 600 MiB cgroup where another process holds 260: %v\n%s", err, b)
	}
}

// childMemoryCgroup makes a cgroup-v1 memory cgroup below this process's,
// limited to limit bytes, removed at the end; it skips, saying why, where
// there is none it may make.
func childMemoryCgroup(t *testing.T, limit int64) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skipf("no /proc/self/cgroup: %v", err)
	}
	parent := ""
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.SplitN(line, ":", 3); len(f) == 3 && f[1] == "memory" {
			parent = filepath.Join("/sys/fs/cgroup/memory", f[2])
		}
	}
	if parent == "" {
		t.Skip("no cgroup-v1 memory controller here (cgroup v2 only, or none)")
	}
	cg := filepath.Join(parent, fmt.Sprintf("kiln-test-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Skipf("cannot make a memory cgroup (not root?): %v", err)
	}
	t.Cleanup(func() { os.Remove(cg) })
	if err := os.WriteFile(filepath.Join(cg, "memory.limit_in_bytes"), []byte(fmt.Sprint(limit)), 0o644); err != nil {
		t.Skipf("cannot limit the cgroup %s: %v", cg, err)
	}
	return cg
}

// Under an address-space limit (ulimit -v; batch systems' vmem) a small run
// trains: glibc's per-thread malloc arenas (64 MiB of address space each,
// for the worker threads' packing buffers) left the Go runtime none, and
// half such runs died with "fatal error: runtime: cannot allocate memory".
func TestTrainsUnderAnAddressSpaceLimit(t *testing.T) {
	needMNIST(t)
	if os.Getenv("MALLOC_ARENA_MAX") != "" {
		t.Skip("MALLOC_ARENA_MAX is set: the arenas are the user's choice")
	}
	dir := t.TempDir()
	for i := range 3 {
		cmd := exec.Command("sh", "-c", `ulimit -v 2000000 && exec "$@"`, "sh", kilnBin, "train", "--model", "mlp",
			"--subset", "0.02", "--epochs", "1", "--threads", "2", "--no-visuals", "--device", "cpu",
			"--run-dir", filepath.Join(dir, fmt.Sprint(i)))
		cmd.Env = append(os.Environ(), "MALLOC_ARENA_MAX=") // exported empty, as job scripts do: unset to glibc
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("run %d under ulimit -v 2000000: %v\n%s", i, err, out[max(0, len(out)-3000):])
		}
	}
}

// Past a file-size limit (ulimit -f) the run stops at the write, naming
// the limit, not a bare "file too large" of a temporary file.
func TestFileSizeLimitIsNamed(t *testing.T) {
	needMNIST(t)
	// 1500 blocks stop a file written whole (best.safetensors), 18 an
	// appended one first (histograms.jsonl).
	for _, blocks := range []string{"1500", "18"} {
		out, err := exec.Command("sh", "-c", `ulimit -f `+blocks+` && exec "$@"`, "sh", kilnBin, "train", "--model", "mlp",
			"--subset", "0.02", "--epochs", "1", "--threads", "1", "--device", "cpu", "--run-dir", filepath.Join(t.TempDir(), "r")).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "KiB (ulimit -f); raise it, and --resume continues the run") || strings.Contains(string(out), "panic") {
			t.Fatalf("a run past ulimit -f %s: %v\n%s", blocks, err, out)
		}
	}
}
