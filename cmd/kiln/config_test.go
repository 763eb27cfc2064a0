package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeCSV writes a small classification csv (three features, classes
// 0..classes-1 in turn) and returns its path.
func writeCSV(t *testing.T, dir string, rows, classes int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("a,b,c,label\n")
	for i := range rows {
		fmt.Fprintf(&b, "%d,%d,%d,%d\n", i%7, i%5, i%3, i%classes)
	}
	p := filepath.Join(dir, "small.csv")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// A model far too wide for memory is refused from its configuration, before
// it is built, by every command that builds one to train.
func TestTooWideAModelIsRefusedBeforeItIsBuilt(t *testing.T) {
	dir := t.TempDir()
	csv := writeCSV(t, dir, 40, 2)
	for _, cmd := range []string{"train", "lr-find"} {
		r := kiln(t, dir, cmd, "--model", "mlp", "--hidden", "100000000", "--dataset", "csv", "--data-dir", csv,
			"--device", "cpu", "--run-dir", filepath.Join(dir, cmd))
		lines := errorLines(r.stderr)
		if r.code == 0 || len(lines) != 1 {
			t.Fatalf("%s: exit %d, want one error line:\n%s", cmd, r.code, r.stderr)
		}
		for _, want := range []string{"--hidden 100000000", "parameters", "available"} {
			if !strings.Contains(lines[0], want) {
				t.Errorf("%s: %q does not mention %q", cmd, lines[0], want)
			}
		}
	}
}
