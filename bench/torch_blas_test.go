package bench

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/cpu"
)

// The suite refuses to compare with a PyTorch whose sgemm reaches the
// reference BLAS, and says what to install. Debian's reference libblas.so.3
// (package libblas3) is put first on the loader's path, as on a machine
// where it is the only BLAS; the same PyTorch without it runs on OpenBLAS
// and is accepted, naming it. Skips, saying why, without /usr/bin/python3
// with torch or without libblas3.
func TestTorchOnReferenceBLASIsRefused(t *testing.T) {
	const python, reference = "/usr/bin/python3", "/usr/lib/x86_64-linux-gnu/blas"
	if err := exec.Command(python, "-c", "import torch").Run(); err != nil {
		t.Skipf("skipped: %s cannot import torch (%v)", python, err)
	}
	if _, err := os.Stat(reference + "/libblas.so.3"); err != nil {
		t.Skipf("skipped: Debian's reference BLAS is not installed (apt-get install libblas3): %v", err)
	}
	ctx := context.Background()
	r, err := newTorchRunner(ctx, python, t.TempDir(), "cpu")
	if err != nil {
		t.Fatalf("PyTorch with the machine's own BLAS: %v", err)
	}
	if r.info.BLASKind == "reference" || r.info.BLASKind == "" || r.info.ATenCPU == "" {
		t.Skipf("skipped: this machine's PyTorch runs on %q (%s): nothing faster to compare the refusal with", r.info.BLASKind, r.info.BLASLibrary)
	}
	t.Logf("PyTorch on %s (%s), ATen %s, oneDNN %s", r.info.BLASKind, r.info.BLASLibrary, r.info.ATenCPU, r.info.OneDNNISA)
	t.Setenv("LD_LIBRARY_PATH", reference)
	_, err = newTorchRunner(ctx, python, t.TempDir(), "cpu")
	if err == nil || !strings.Contains(err.Error(), "reference BLAS") || !strings.Contains(err.Error(), "libopenblas0-pthread") {
		t.Errorf("PyTorch on the reference BLAS: %v, want a refusal saying what to install", err)
	}
}

// PyTorch's OpenBLAS runs the widest kernels this CPU has: OpenBLAS 0.3.21
// picks its SSE3 Prescott kernels (a third of the speed) on a CPU newer than
// its CPUID table, an Emerald Rapids Xeon (family 6 model 207) among them,
// and the harness then sets OPENBLAS_CORETYPE for it. Skips, saying why,
// without /usr/bin/python3 with torch on OpenBLAS.
func TestTorchOpenBLASRunsTheWidestKernels(t *testing.T) {
	const python = "/usr/bin/python3"
	if err := exec.Command(python, "-c", "import torch").Run(); err != nil {
		t.Skipf("skipped: %s cannot import torch (%v)", python, err)
	}
	t.Setenv("OPENBLAS_CORETYPE", "") // unset below: the harness decides
	os.Unsetenv("OPENBLAS_CORETYPE")
	r, err := newTorchRunner(context.Background(), python, t.TempDir(), "cpu")
	if err != nil {
		t.Fatal(err)
	}
	if r.info.BLASKind != "openblas" {
		t.Skipf("skipped: PyTorch runs on %q here, not OpenBLAS", r.info.BLASKind)
	}
	want := map[string]bool{"Haswell": true, "Zen": true, "SkylakeX": true, "Cooperlake": true, "SapphireRapids": true}
	switch {
	case cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL && cpu.X86.HasAVX512DQ:
		want = map[string]bool{"SkylakeX": true, "Cooperlake": true, "SapphireRapids": true}
	case !(cpu.X86.HasAVX2 && cpu.X86.HasFMA):
		t.Skip("skipped: a CPU without AVX2 and FMA")
	}
	t.Logf("OpenBLAS: %s (%s)", r.info.OpenBLASCore, r.info.OpenBLAS)
	if !want[r.info.OpenBLASCore] {
		t.Errorf("PyTorch's OpenBLAS runs its %q kernels, want one of %v", r.info.OpenBLASCore, want)
	}
}
