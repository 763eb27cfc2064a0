package tune

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A --space file is bounded like a configuration before the YAML parser
// sees it: a deeply nested one (200 KB of brackets took the parser past
// 2 GB) or a huge one is refused with the limit in the message, and a
// directory is not read at all.
func TestLoadSpaceBoundsTheFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct{ path, want string }{
		{write("deep.yaml", "lr: "+strings.Repeat("[", 100_000)+strings.Repeat("]", 100_000)+"\n"), "nested deeper than 8"},
		{write("big.yaml", "lr: [0.1, 0.2]\n"+strings.Repeat("#\n", 200_000)), "256 KiB"},
		{dir, "not a regular file"},
	} {
		if _, err := LoadSpace(c.path); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error mentioning %q", filepath.Base(c.path), err, c.want)
		}
	}
	s, err := LoadSpace(write("ok.yaml", "lr: {min: 1e-4, max: 0.3, scale: log}\nhidden: [32, 64]\n"))
	if err != nil || len(s.Dims) != 2 {
		t.Fatalf("a plain space: %v, %v", s, err)
	}
}
