package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// Machine says what the figures were measured on.
type Machine struct {
	Name        string   `json:"name"` // the file-name label, e.g. amd-epyc-2core
	CPU         string   `json:"cpu"`
	Cores       int      `json:"cores"`
	Flags       []string `json:"cpu_flags"` // the SIMD features that matter here
	MemoryBytes int64    `json:"memory_bytes"`
	GPU         string   `json:"gpu,omitempty"`
	OS          string   `json:"os"`
}

// Versions are the software the figures depend on.
type Versions struct {
	Go        string `json:"go"`
	Kiln      string `json:"kiln"` // git revision of the kiln build
	KilnDirty bool   `json:"kiln_dirty,omitempty"`
	Torch     string `json:"torch,omitempty"`
	Python    string `json:"python,omitempty"`
	OpenBLAS  string `json:"openblas,omitempty"`   // as torch's OpenBLAS reports itself
	TorchBLAS string `json:"torch_blas,omitempty"` // the BLAS torch's sgemm reaches, and its library
	TorchCPU  string `json:"torch_cpu,omitempty"`  // ATen's kernel level and oneDNN's ISA
	CUDA      string `json:"torch_cuda,omitempty"`
}

// DescribeMachine reads /proc and, where present, nvidia-smi.
func DescribeMachine(ctx context.Context) Machine {
	m := Machine{CPU: runtime.GOARCH, Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.OS += " " + strings.TrimSpace(string(b))
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		gotName, gotFlags := false, false
		for sc.Scan() && !(gotName && gotFlags) {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			switch strings.TrimSpace(k) {
			case "model name":
				m.CPU, gotName = strings.TrimSpace(v), true
			case "flags":
				have := map[string]bool{}
				for _, f := range strings.Fields(v) {
					have[f] = true
				}
				for _, f := range []string{"avx", "avx2", "fma", "avx512f", "avx512_bf16", "amx_tile", "asimd"} {
					if have[f] {
						m.Flags = append(m.Flags, f)
					}
				}
				gotFlags = true
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				m.MemoryBytes = kb << 10
			}
		}
	}
	if p, err := exec.LookPath("nvidia-smi"); err == nil {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, p, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader").Output()
		if err == nil {
			m.GPU = strings.Join(strings.Fields(strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "; ")), " ")
		}
	}
	m.Name = machineName(m)
	return m
}

var nonSlug = regexp.MustCompile(`[^a-z0-9]+`)

// slug makes a lower-case file-name part of s.
func slug(s string) string {
	s = strings.ToLower(s)
	for _, noise := range []string{"(r)", "(tm)", " cpu", " processor", "-core"} {
		s = strings.ReplaceAll(s, noise, " ")
	}
	s = strings.Trim(nonSlug.ReplaceAllString(s, "-"), "-")
	if len(s) > 40 {
		s = strings.TrimRight(s[:40], "-")
	}
	return s
}

// CheckName refuses a --name with nothing to name the files by.
func CheckName(name string) error {
	if name != "" && slug(name) == "" {
		return fmt.Errorf("--name %q: want letters or digits for the file names", name)
	}
	return nil
}

// machineName is e.g. "amd-epyc-2core" or "amd-epyc-16core-nvidia-h100".
func machineName(m Machine) string {
	name := fmt.Sprintf("%s-%dcore", slug(m.CPU), m.Cores)
	if m.GPU != "" {
		gpu, _, _ := strings.Cut(m.GPU, ",")
		name += "-" + slug(gpu)
	}
	return name
}

// kilnRevision is the git revision the running binary was built from, with
// `git rev-parse` in the working directory as a fallback.
func kilnRevision(ctx context.Context) (rev string, dirty bool) {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if rev == "" {
		// Built with -buildvcs=false: ask git, in the working directory and
		// then beside the binary.
		dirs := []string{"."}
		if exe, err := os.Executable(); err == nil {
			dirs = append(dirs, filepath.Dir(exe))
		}
		for _, dir := range dirs {
			out, err := exec.CommandContext(ctx, "git", "-C", dir, "rev-parse", "HEAD").Output()
			if err != nil {
				continue
			}
			rev = strings.TrimSpace(string(out))
			st, err := exec.CommandContext(ctx, "git", "-C", dir, "status", "--porcelain", "--untracked-files=no").Output()
			dirty = err == nil && len(strings.TrimSpace(string(st))) > 0
			break
		}
		if rev == "" {
			return "unknown", false
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return rev, dirty
}
