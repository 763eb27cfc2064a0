package engine_test

// The harness every CUDA kernel test uses. The same tests run on a real GPU
// (go test -tags cuda) and on the emulator (go test -tags cudaemu, which
// `make test-kernels` runs under AddressSanitizer); a plain build skips them,
// saying so. Each comparison is booked against the kernels it covers (a name
// that is not a declared kernel fails the test: the declarations, in
// kernels_gen.go, are generated from kernels/*.cu), and the run ends with one
// line per declared kernel:
//
//	<kernel symbol> max_err=<x> tol=<y> ok|FAIL
//
// With KILN_KERNEL_COVERAGE=1 a declared kernel that no test covered fails
// the run.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"sync"
	"testing"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if cuda.Ready() {
		if !printKernelReport() && code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// cudaOrSkip opens the device or skips the test with the reason;
// REQUIRE_CUDA=1 makes the skip a failure.
func cudaOrSkip(t testing.TB) {
	t.Helper()
	if _, err := engine.OpenDevice(engine.CUDA); err != nil {
		if os.Getenv("REQUIRE_CUDA") == "1" {
			t.Fatalf("REQUIRE_CUDA=1 but no CUDA device: %v", err)
		}
		t.Skipf("skipped: no CUDA device (%v)", err)
	}
}

// dev returns a CUDA copy of a CPU tensor (float64 becomes float32).
func dev(t testing.TB, x *engine.Tensor) *engine.Tensor {
	t.Helper()
	if x == nil {
		return nil
	}
	d, err := x.To(engine.CUDA)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// devRand is a seeded random float32 CPU tensor in [-1,1) and its CUDA copy.
func devRand(t testing.TB, rng *rand.Rand, shape ...int) (cpu, gpu *engine.Tensor) {
	t.Helper()
	cpu = randTensor(rng, engine.Float32, shape...)
	return cpu, dev(t, cpu)
}

type kernelResult struct {
	maxErr, tol float64 // the comparison with the largest err/tol
	ratio       float64
	checks      int
	failed      bool
}

var (
	reportMu sync.Mutex
	report   = map[string]*kernelResult{}
)

// checkKernels compares a CUDA result with the CPU reference element by
// element, |gpu−cpu| ≤ atol + rtol·|cpu|, fails the test at the worst
// element, and books the result against each kernel in kernels.
func checkKernels(t testing.TB, kernels []string, what string, got, want *engine.Tensor, atol, rtol float64) {
	t.Helper()
	if got.Device() != engine.CUDA {
		t.Fatalf("%s: result is on %v, want cuda", what, got.Device())
	}
	if !got.SameShape(want.Shape()...) {
		t.Fatalf("%s: shape %v, want %v", what, got.Shape(), want.Shape())
	}
	declared := cuda.Declared()
	for _, k := range kernels {
		if i := sort.SearchStrings(declared, k); i == len(declared) || declared[i] != k {
			t.Fatalf("%s: %q is not a kernel of kernels/*.cu (see engine/kernels_gen.go)", what, k)
		}
	}
	g, w := got.Values(), want.Values()
	worstRatio, worstErr, worstTol, at := 0.0, 0.0, atol, -1
	for i := range w {
		err := math.Abs(g[i] - w[i])
		tol := atol + rtol*math.Abs(w[i])
		if math.IsNaN(g[i]) != math.IsNaN(w[i]) {
			err = math.Inf(1)
		}
		if r := err / tol; r > worstRatio || at < 0 {
			worstRatio, worstErr, worstTol, at = r, err, tol, i
		}
	}
	failed := worstRatio > 1
	reportMu.Lock()
	for _, k := range kernels {
		r := report[k]
		if r == nil {
			r = &kernelResult{}
			report[k] = r
		}
		r.checks++
		if worstRatio >= r.ratio {
			r.ratio, r.maxErr, r.tol = worstRatio, worstErr, worstTol
		}
		r.failed = r.failed || failed
	}
	reportMu.Unlock()
	if failed {
		t.Errorf("%s (%v): element %d gpu=%g cpu=%g |Δ|=%.3g > tol %.3g", what, kernels, at, g[at], w[at], worstErr, worstTol)
	}
}

// printKernelReport prints one line per kernel and reports whether every
// kernel passed (and, with KILN_KERNEL_COVERAGE=1, was covered).
func printKernelReport() bool {
	reportMu.Lock()
	defer reportMu.Unlock()
	ok := true
	names := cuda.Declared() // sorted; checkKernels books no other name
	coverage := os.Getenv("KILN_KERNEL_COVERAGE") == "1"
	for _, n := range names {
		r := report[n]
		switch {
		case r == nil && coverage:
			fmt.Printf("%s max_err=- tol=- FAIL (no test covers it)\n", n)
			ok = false
		case r == nil:
		case r.failed:
			fmt.Printf("%s max_err=%.3g tol=%.3g FAIL\n", n, r.maxErr, r.tol)
			ok = false
		default:
			fmt.Printf("%s max_err=%.3g tol=%.3g ok\n", n, r.maxErr, r.tol)
		}
	}
	return ok
}
