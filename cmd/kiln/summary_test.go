package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/layers"
)

func TestSummaryCommand(t *testing.T) {
	var s layers.Summary
	out := mustRun(t, workDir, "summary", "--model", "lenet", "--json").stdout
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("kiln summary --json: %v\n%s", err, out)
	}
	// LeNet-5 on 28×28×1 (layers' hand count).
	if s.FLOPs != 852370 || s.Params != 61706 || len(s.Layers) != 13 {
		t.Errorf("lenet: %d FLOPs, %d params, %d rows", s.FLOPs, s.Params, len(s.Layers))
	}
	table := mustRun(t, workDir, "summary", "--model", "inception", "--input", "32x32x3").stdout
	for _, want := range []string{"inception1 (Inception)", "    inception1.branch2.1.conv (Conv2D)", "[1, 56, 16, 16]",
		"Input: 32x32x3 (HxWxC)", "a multiply-add counts 2", "non-trainable"} {
		if !strings.Contains(table, want) {
			t.Errorf("kiln summary --model inception: no %q in\n%s", want, table)
		}
	}
	for _, bad := range [][]string{{"--input", "28x28"}, {"--input", "0x28x1"}, {"--model", "resnet"}, {"--input", "30000x30000x1"}} {
		if r := kiln(t, workDir, append([]string{"summary"}, bad...)...); r.code != 2 {
			t.Errorf("kiln summary %v: exit %d, want 2", bad, r.code)
		}
	}
	// A model too large for memory is refused from its configuration, as
	// kiln train refuses it, not built until the runtime fails.
	for _, big := range [][]string{{"--model", "mlp", "--hidden", "1000000000"}, {"--model", "gmlp", "--input", "4000x4000x1"},
		{"--model", "lenet", "--classes", "2000000000"}} {
		if r := kiln(t, workDir, append([]string{"summary"}, big...)...); r.code == 0 || !strings.Contains(r.stderr, "is available") ||
			strings.Contains(r.stderr, "goroutine") {
			t.Errorf("kiln summary %v: exit %d, %q; want a refusal from the configuration", big, r.code, r.stderr)
		}
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 852370: "852,370", -1234567: "-1,234,567"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
