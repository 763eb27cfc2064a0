package kernelsrc

import (
	"os"
	"path/filepath"
	"testing"
)

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The hash follows every source but all.cu (written from the others by make
// kernels), and a directory without sources is an error, not a hash.
func TestSHAFollowsTheSources(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "kernels")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := SHA(root); err == nil {
		t.Fatal("no sources: want an error")
	}
	write(t, filepath.Join(dir, "a.cu"), "kernel a")
	write(t, filepath.Join(dir, "t.cuh"), "tile")
	base, err := SHA(root)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, generated), "#include \"a.cu\"")
	write(t, filepath.Join(dir, "notes.txt"), "not a source")
	if got, _ := SHA(root); got != base {
		t.Errorf("all.cu or a non-source changed the hash")
	}
	for _, edit := range []struct{ name, text string }{
		{"t.cuh", "tile!"}, {"e.h", "emulator"}, {"a.cu", "kernel b"},
	} {
		write(t, filepath.Join(dir, edit.name), edit.text)
		got, err := SHA(root)
		if err != nil {
			t.Fatal(err)
		}
		if got == base {
			t.Errorf("editing %s left the hash as it was", edit.name)
		}
		base = got
	}
	// Moving text between files is an edit too.
	write(t, filepath.Join(dir, "a.cu"), "kernel")
	write(t, filepath.Join(dir, "e.h"), " bemulator")
	if got, _ := SHA(root); got == base {
		t.Error("moving text from one file to the next left the hash as it was")
	}
}
