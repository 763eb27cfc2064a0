package engine_test

import (
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// Every ISA level this CPU runs is tested, so a CPU with AVX-512 still tests
// the AVX2 and the generic paths: at each level every C fast path is checked
// against its float64 reference on the awkward shapes of its own test.
func TestEveryISALevel(t *testing.T) {
	t.Logf("this CPU runs %v; in use: %s", engine.CPUISAs(), engine.CPUISA())
	defer restoreISA(t)()
	for _, level := range engine.CPUISAs() {
		t.Run(level, func(t *testing.T) {
			if err := engine.SetCPUISA(level); err != nil {
				t.Fatal(err)
			}
			TestConv2DFastMatchesReference(t)
			TestLayerNormFloat32RowLengths(t)
			TestBatchNormFloat32MatchesFloat64Loop(t)
			TestMaxPool2x2VectorPicksLikeFloat64(t)
			TestPool2DMatchesReference(t)
			TestActivationFloat32MatchesFloat64Loop(t)
			TestBroadcastMultiplyMatchesReference(t)
			TestSpatialGatingMatchesReference(t)
			TestOptimizerFloat32MatchesFloat64Loop(t)
		})
	}
}

// The element-wise loops (activations, the broadcast product, the
// optimisers) do each element's operations one rounding at a time at every
// level, so every level gives the same bits: only the vector width differs.
func TestElementwiseLoopsGiveTheSameBitsAtEveryLevel(t *testing.T) {
	defer restoreISA(t)()
	var want [][]float32
	for _, level := range engine.CPUISAs() {
		if err := engine.SetCPUISA(level); err != nil {
			t.Fatal(err)
		}
		got := elementwiseResults(t)
		if want == nil {
			want = got
			continue
		}
		for i := range got {
			if !slices.Equal(got[i], want[i]) {
				t.Errorf("%s: result %d differs from %s's", level, i, engine.CPUISAs()[0])
			}
		}
	}
}

// elementwiseResults runs every element-wise C loop once on fixed random
// data (lengths around the 8- and 16-lane widths) and returns the outputs.
func elementwiseResults(t *testing.T) [][]float32 {
	rng := rand.New(rand.NewPCG(3, 4))
	var out [][]float32
	for _, n := range []int{1, 7, 8, 17, 33, 1000} {
		x, dout := randTensor(rng, engine.Float32, n), randTensor(rng, engine.Float32, n)
		for _, kind := range []engine.Activation{engine.ReLU, engine.GELU, engine.Sigmoid, engine.Tanh} {
			y, dx := engine.New(engine.Float32, n), engine.New(engine.Float32, n)
			opsMust(t, engine.ActivationForward(y, x, kind))
			opsMust(t, engine.ActivationBackward(dx, dout, x, y, kind))
			out = append(out, slices.Clone(y.Float32()), slices.Clone(dx.Float32()))
		}
		g := randTensor(rng, engine.Float32, n)
		w, buf := x.Clone(), engine.New(engine.Float32, n)
		opsMust(t, engine.SGDStep(w, g, buf, engine.SGDConfig{LR: 0.05, Momentum: 0.9, WeightDecay: 5e-4, Nesterov: true}))
		out = append(out, slices.Clone(w.Float32()), slices.Clone(buf.Float32()))
	}
	x, g := randTensor(rng, engine.Float32, 3, 5, 19), randTensor(rng, engine.Float32, 3, 5, 1)
	y := engine.New(engine.Float32, 3, 5, 19)
	opsMust(t, engine.BroadcastMultiplyForward(y, x, g))
	return append(out, slices.Clone(y.Float32()))
}

// atEveryISALevel runs f as a subtest at each level this CPU runs, then puts
// back the level in use.
func atEveryISALevel(t *testing.T, f func(t *testing.T)) {
	defer restoreISA(t)()
	for _, level := range engine.CPUISAs() {
		opsMust(t, engine.SetCPUISA(level))
		t.Run(level, f)
	}
}

// restoreISA returns a func that puts back the level in use now.
func restoreISA(t *testing.T) func() {
	was := engine.CPUISA()
	return func() {
		if err := engine.SetCPUISA(was); err != nil {
			t.Error(err)
		}
	}
}

// TestCPUZMMSplitIsZen4 holds the CPUID reading against the kernel's:
// family 25 (19h) of AuthenticAMD with AVX-512 is Zen 4, which splits its
// zmm FMAs; every other CPU (Intel, Zen 5's family 26, Zen 3 without
// AVX-512) does not.
func TestCPUZMMSplitIsZen4(t *testing.T) {
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil || len(engine.CPUISAs()) == 1 {
		t.Skipf("skipped: needs /proc/cpuinfo and the C fast paths (cgo on amd64) (%v)", err)
	}
	field := func(name string) string {
		for line := range strings.Lines(string(info)) {
			k, v, ok := strings.Cut(line, ":")
			if ok && strings.TrimSpace(k) == name {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}
	want := field("vendor_id") == "AuthenticAMD" && field("cpu family") == "25" &&
		slices.Contains(strings.Fields(field("flags")), "avx512f")
	t.Logf("vendor %s, family %s: zmm split %v", field("vendor_id"), field("cpu family"), engine.CPUZMMSplit())
	if got := engine.CPUZMMSplit(); got != want {
		t.Errorf("CPUZMMSplit() = %v, want %v from /proc/cpuinfo", got, want)
	}
}
