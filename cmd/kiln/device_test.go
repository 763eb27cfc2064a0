package main

import (
	"bytes"
	"errors"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
)

// The plain build's device choice. The test binary has no kiln-cuda next to
// it, so a request for the GPU never hands over here; the handover itself
// is checked end to end by scripts/check-cpu-fallback.sh (CI).
func TestResolveDevicePlainBuild(t *testing.T) {
	if cuda.Built() {
		t.Skip("this build has a CUDA backend; the plain build's fallback is what is tested here")
	}
	t.Setenv(envDevice, "")
	t.Setenv(envHandoff, "")
	run := func(flag string) (engine.Device, string, error) {
		var buf bytes.Buffer
		d, err := resolveDevice(flag, zerolog.New(&buf))
		return d, buf.String(), err
	}
	if d, log, err := run("cpu"); err != nil || d != engine.CPU || log != "" {
		t.Errorf("cpu: %v %q %v, want the CPU, silently", d, log, err)
	}
	for _, flag := range []string{"auto", "", " AUTO "} {
		d, log, err := run(flag)
		if err != nil || d != engine.CPU {
			t.Errorf("%q: %v %v, want the CPU", flag, d, err)
		}
		if strings.Count(log, "\n") != 1 || !strings.Contains(log, "running on the CPU") ||
			!(strings.Contains(log, "no CUDA backend") || strings.Contains(log, "NVIDIA driver")) {
			t.Errorf("%q: log %q, want one line saying why the CPU", flag, log)
		}
	}
	_, log, err := run("cuda")
	if err == nil || !strings.Contains(err.Error(), "--device cuda") || log != "" {
		t.Errorf("cuda: %v (log %q), want an error saying what is missing", err, log)
	}
	if _, _, err := run("tpu"); !errors.As(err, new(usageError)) {
		t.Errorf("tpu: %v, want a usage error", err)
	}

	t.Setenv(envDevice, "cpu")
	if d, log, err := run("auto"); err != nil || d != engine.CPU || log != "" {
		t.Errorf("KILN_DEVICE=cpu, auto: %v %q %v, want the CPU, silently", d, log, err)
	}
	t.Setenv(envDevice, "cuda")
	if d, _, err := run("cpu"); err != nil || d != engine.CPU {
		t.Errorf("KILN_DEVICE=cuda, --device cpu: %v %v, want the flag to win", d, err)
	}
	if _, _, err := run("auto"); err == nil || !strings.Contains(err.Error(), "$KILN_DEVICE=cuda") || !strings.Contains(err.Error(), "unset KILN_DEVICE") {
		t.Errorf("KILN_DEVICE=cuda, auto: %v, want the explicit cuda's error, naming the variable (no flag asked)", err)
	}
	t.Setenv(envDevice, "gpu0")
	if _, _, err := run("auto"); !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), envDevice) {
		t.Errorf("KILN_DEVICE=gpu0: %v, want a usage error naming %s", err, envDevice)
	}

	t.Setenv(envDevice, "")
	t.Setenv(envHandoff, "/opt/kiln")
	if _, log, _ := run("auto"); !strings.Contains(log, "/opt/kiln handed over") {
		t.Errorf("after a handover: log %q, want it to say so", log)
	}
}

func TestGPUOpsNames(t *testing.T) {
	got := gpuOps([]string{"relu_forward_f32", "relu_backward_f32", "gemm_nt_128x128_tf32", "gemm_nn_64x64",
		"conv2d_input_grad_128x128", "sgd_step_f32", "fill_f32"})
	want := "conv2d_input_grad fill gemm relu sgd_step"
	if strings.Join(got, " ") != want {
		t.Errorf("gpuOps = %q, want %q", got, want)
	}
}

// A kiln-cuda built from other sources than kiln is not handed over to;
// builds without a Git stamp are not compared.
func TestBuildsMatch(t *testing.T) {
	stamp := func(rev, modified string) *debug.BuildInfo {
		bi := &debug.BuildInfo{}
		if rev != "" {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: "vcs.revision", Value: rev},
				debug.BuildSetting{Key: "vcs.modified", Value: modified})
		}
		return bi
	}
	const a, b = "0e0f9faa66c8f4d5373c0e2cee9fb9f2aedb99bb", "c6c1869b2e0f4d5373c0e2cee9fb9f2aedb99bb1"
	for _, c := range []struct {
		self, other *debug.BuildInfo
		want        string // "" for a match
	}{
		{stamp(a, "false"), stamp(a, "false"), ""},
		{stamp(a, "true"), stamp(a, "true"), ""},
		{stamp(a, "false"), stamp("", ""), ""},
		{stamp("", ""), stamp(b, "false"), ""},
		{nil, stamp(b, "false"), ""},
		{stamp(a, "false"), stamp(b, "false"), "/x/kiln-cuda was built from revision c6c1869b2e0f, this kiln from revision 0e0f9faa66c8"},
		{stamp(a, "true"), stamp(a, "false"), "built from revision 0e0f9faa66c8, this kiln from revision 0e0f9faa66c8 with uncommitted changes"},
	} {
		err := buildsMatch(c.self, c.other, "/x/kiln-cuda")
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%v against %v: %v, want %q", vcsStamp(c.self), vcsStamp(c.other), err, c.want)
		}
	}
}

// kiln info reads $KILN_DEVICE as train does: it shows what training would
// use, and a bad value is refused the same way.
func TestInfoReadsKILN_DEVICE(t *testing.T) {
	t.Setenv("KILN_DEVICE", "bogus")
	if r := kiln(t, t.TempDir(), "info"); r.code != 2 || !strings.Contains(r.stderr, `$KILN_DEVICE: unknown device "bogus"`) {
		t.Errorf("KILN_DEVICE=bogus kiln info: exit %d\n%s", r.code, r.stderr)
	}
	t.Setenv("KILN_DEVICE", "cpu")
	if r := kiln(t, t.TempDir(), "info"); r.code != 0 || !strings.Contains(r.stdout, "device:   cpu (--device cpu)") {
		t.Errorf("KILN_DEVICE=cpu kiln info: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
