package bench

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The PyTorch side ships inside the binary, so `kiln bench suite` runs the
// scripts it was built with from any directory.
//
//go:embed torch/suite.py torch/models.py torch/blasinfo.py
var torchScripts embed.FS

// threadSetting is one way of running PyTorch: its own intra-op threads and
// OpenBLAS's threads (set through the environment before the process
// starts). On a 2-core machine the wrong pair oversubscribes the cores and
// halves PyTorch's speed, so every measurement uses the pair that won a probe.
type threadSetting struct {
	Torch    int `json:"torch_threads"`
	OpenBLAS int `json:"openblas_threads"`
}

func (t threadSetting) String() string {
	return fmt.Sprintf("torch %d / OpenBLAS %d", t.Torch, t.OpenBLAS)
}

// settingsUpTo lists the pairs drawn from {1, n}: the corners of the space,
// which is where the best setting has been every time it was searched here.
func settingsUpTo(n int) []threadSetting {
	vals := []int{1}
	if n > 1 {
		vals = append(vals, n)
	}
	var s []threadSetting
	for _, t := range vals {
		for _, b := range vals {
			s = append(s, threadSetting{t, b})
		}
	}
	return s
}

// torchSettings are the PyTorch thread settings probed for a workload that
// Kiln runs on n threads. On the GPU the host threads only launch kernels,
// so one setting (1 / 1) stands for all.
func (s *suite) torchSettings(n int) []threadSetting {
	if s.cfg.Device == "cuda" {
		return settingsUpTo(1)
	}
	return settingsUpTo(n)
}

// torchRunner starts PyTorch workers: `python suite.py MODE --spec FILE`.
type torchRunner struct {
	python, dir, device string
	info                torchInfo
}

type torchInfo struct {
	Torch    string `json:"torch"`
	Python   string `json:"python"`
	OpenBLAS string `json:"openblas"`
	// OpenBLASCore is the kernel set OpenBLAS runs (OPENBLAS_CORETYPE's
	// names: Haswell, SkylakeX, Cooperlake, Prescott, ...).
	OpenBLASCore string `json:"openblas_core"`
	// The BLAS torch's sgemm reaches (openblas, mkl, blis, atlas,
	// reference or unknown: torch/blasinfo.py), the ATen kernels' level
	// and oneDNN's instruction set.
	BLASKind    string `json:"blas_kind"`
	BLASLibrary string `json:"blas_library"`
	ATenCPU     string `json:"aten_cpu"`
	OneDNNISA   string `json:"onednn_isa"`

	CUDA       bool   `json:"cuda"`
	CUDADevice string `json:"cuda_device"`
	CUDAVer    string `json:"cuda_version"`
}

// newTorchRunner unpacks the scripts into dir and checks that python can
// import torch; the error says why PyTorch cannot be compared.
func newTorchRunner(ctx context.Context, python, dir, device string) (*torchRunner, error) {
	for _, name := range []string{"suite.py", "models.py", "blasinfo.py"} {
		b, err := torchScripts.ReadFile("torch/" + name)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return nil, err
		}
	}
	r := &torchRunner{python: python, dir: dir, device: device}
	out, err := r.run(ctx, "info", nil, threadSetting{1, 1})
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(out, &r.info); err != nil {
		return nil, fmt.Errorf("torch info: %w", err)
	}
	if device == "cuda" && !r.info.CUDA {
		return nil, fmt.Errorf("PyTorch %s has no CUDA device", r.info.Torch)
	}
	if r.info.BLASKind == "reference" && device != "cuda" {
		return nil, errReferenceBLAS(r.info.BLASLibrary)
	}
	return r, nil
}

// workerTimeout bounds one PyTorch worker: the longest, time to accuracy,
// is capped at 6 minutes.
var workerTimeout = 15 * time.Minute

// run starts one worker with setting and returns the JSON object its last
// line of output holds. spec, when not nil, is passed as a file.
func (r *torchRunner) run(ctx context.Context, mode string, spec any, s threadSetting, args ...string) (json.RawMessage, error) {
	argv := []string{filepath.Join(r.dir, "suite.py"), mode, "--threads", strconv.Itoa(s.Torch), "--device", r.device}
	if spec != nil {
		b, err := json.Marshal(spec)
		if err != nil {
			return nil, err
		}
		f, err := os.CreateTemp(r.dir, mode+"-*.json")
		if err != nil {
			return nil, err
		}
		defer os.Remove(f.Name())
		_, err = f.Write(b)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
		argv = append(argv, "--spec", f.Name())
	}
	// A worker that hangs (a deadlocked BLAS, a stuck GPU) ends the suite's
	// wait, not the suite: no mode runs near this long.
	wctx, cancel := context.WithTimeout(ctx, workerTimeout)
	defer cancel()
	cmd := exec.CommandContext(wctx, r.python, append(argv, args...)...)
	cmd.Env = threadEnv(os.Environ(), s)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	last := lastLine(stdout.String())
	var obj map[string]json.RawMessage
	if jerr := json.Unmarshal([]byte(last), &obj); jerr == nil {
		if msg, ok := obj["error"]; ok {
			var s string
			_ = json.Unmarshal(msg, &s)
			return nil, fmt.Errorf("PyTorch worker (%s): %s", mode, s)
		}
		if runErr == nil {
			return json.RawMessage(last), nil
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if wctx.Err() != nil {
		return nil, fmt.Errorf("PyTorch worker (%s) did not finish in %v", mode, workerTimeout)
	}
	why := tail(stderr.String(), 400)
	if runErr != nil {
		return nil, fmt.Errorf("PyTorch worker (%s) failed: %v: %s", mode, runErr, why)
	}
	return nil, fmt.Errorf("PyTorch worker (%s) printed no JSON: %s", mode, why)
}

// threadEnv sets both thread counts for a PyTorch process. OpenBLAS reads
// its count once, at load, so it has to be in the environment.
func threadEnv(env []string, s threadSetting) []string {
	out := env[:0:0]
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE":
			continue
		}
		out = append(out, kv)
	}
	return append(out, "OPENBLAS_NUM_THREADS="+strconv.Itoa(s.OpenBLAS), "OMP_NUM_THREADS="+strconv.Itoa(s.Torch),
		"MKL_NUM_THREADS="+strconv.Itoa(s.Torch))
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return strings.TrimSpace(s[i+1:])
	}
	return s
}

// tail is the last n bytes of s's trimmed text, on one line.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "…" + s[len(s)-n:]
	}
	return strings.Join(strings.Fields(s), " ")
}

// errReferenceBLAS refuses a CPU comparison against PyTorch on the
// reference BLAS (Debian's python3-torch without libopenblas0-pthread):
// about ten times slower than it should be, it would make every ratio a lie
// (torch/blasinfo.py says the same to compare.py's users).
func errReferenceBLAS(lib string) error {
	return fmt.Errorf("PyTorch runs on the reference BLAS (%s), about 10x slower than on OpenBLAS: ratios against it would mean nothing. "+
		"Install OpenBLAS (Debian: apt-get install libopenblas0-pthread), then check that `readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3` names openblas", lib)
}
