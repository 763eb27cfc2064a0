package main

import (
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// KILN_CPU_ISA forces the C fast paths' level: kiln info and kiln bench
// --json say which runs; a level the CPU lacks, or a misspelt one, stops
// kiln with exit 2 before it does anything.
func TestCPUISAFromTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	levels := engine.CPUISAs()
	lowest := levels[0]
	t.Setenv("KILN_CPU_ISA", lowest)
	if r := mustRun(t, dir, "info", "--device", "cpu"); !strings.Contains(r.stdout, "ISA level "+lowest+", set by KILN_CPU_ISA") ||
		!strings.Contains(r.stdout, "bf16:     none at ISA level "+lowest) {
		t.Errorf("kiln info with KILN_CPU_ISA=%s:\n%s", lowest, r.stdout)
	}
	if r := mustRun(t, dir, "bench", "--model", "mlp", "--batch", "4", "--seconds", "0", "--steps", "1", "--json"); !strings.Contains(r.stdout, `"cpu_isa":"`+lowest+`"`) {
		t.Errorf("kiln bench --json with KILN_CPU_ISA=%s:\n%s", lowest, r.stdout)
	}
	for _, bad := range []string{"avx9", "sse"} {
		t.Setenv("KILN_CPU_ISA", bad)
		if r := kiln(t, dir, "info"); r.code != 2 || !strings.Contains(r.stderr, "$KILN_CPU_ISA") {
			t.Errorf("KILN_CPU_ISA=%s: exit %d, %q", bad, r.code, r.stderr)
		}
	}
	if len(levels) < 3 {
		t.Setenv("KILN_CPU_ISA", "avx512")
		if r := kiln(t, dir, "info"); r.code != 2 || !strings.Contains(r.stderr, "this CPU runs") {
			t.Errorf("KILN_CPU_ISA=avx512 on a CPU without it: exit %d, %q", r.code, r.stderr)
		}
	}
}

// KILN_CONV_WINOGRAD is 0, 1 or 2; anything else stops kiln with exit 2
// and says which variable.
func TestConvWinogradFromTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"0", "1", "2"} {
		t.Setenv("KILN_CONV_WINOGRAD", v)
		if r := kiln(t, dir, "info", "--device", "cpu"); r.code != 0 {
			t.Errorf("KILN_CONV_WINOGRAD=%s: exit %d, %q", v, r.code, r.stderr)
		}
	}
	for _, bad := range []string{"no", "3", "4"} {
		t.Setenv("KILN_CONV_WINOGRAD", bad)
		if r := kiln(t, dir, "info"); r.code != 2 || !strings.Contains(r.stderr, "$KILN_CONV_WINOGRAD") {
			t.Errorf("KILN_CONV_WINOGRAD=%s: exit %d, %q", bad, r.code, r.stderr)
		}
	}
}

// KILN_CPU_AMX=off keeps bf16 products on AVX512_BF16 where the CPU has
// AMX: kiln info and kiln bench --json say so. A value other than on or off
// stops kiln with exit 2.
func TestCPUAMXFromTheEnvironment(t *testing.T) {
	dir := t.TempDir()
	for _, bad := range []string{"no", "2"} {
		t.Setenv("KILN_CPU_AMX", bad)
		if r := kiln(t, dir, "info"); r.code != 2 || !strings.Contains(r.stderr, "$KILN_CPU_AMX") {
			t.Errorf("KILN_CPU_AMX=%s: exit %d, %q", bad, r.code, r.stderr)
		}
	}
	if !engine.CPUHasBF16() {
		t.Skip("skipped: this CPU has no AVX512_BF16, so bf16 runs on neither path")
	}
	for _, c := range []struct{ env, info, path string }{
		{"off", "products with AVX512_BF16 (AMX, if the CPU has it, off by KILN_CPU_AMX)", "avx512_bf16"},
		{"on", "products " + map[bool]string{true: "on AMX tiles", false: "with AVX512_BF16"}[engine.CPUHasAMX()],
			map[bool]string{true: "amx", false: "avx512_bf16"}[engine.CPUHasAMX()]},
	} {
		t.Setenv("KILN_CPU_AMX", c.env)
		if r := mustRun(t, dir, "info", "--device", "cpu"); !strings.Contains(r.stdout, "bf16:     "+c.info) {
			t.Errorf("kiln info with KILN_CPU_AMX=%s:\n%s", c.env, r.stdout)
		}
		r := mustRun(t, dir, "bench", "--model", "mlp", "--batch", "4", "--seconds", "0", "--steps", "1", "--precision", "bf16", "--json")
		if !strings.Contains(r.stdout, `"cpu_bf16":"`+c.path+`"`) {
			t.Errorf("kiln bench --json with KILN_CPU_AMX=%s:\n%s", c.env, r.stdout)
		}
	}
}
