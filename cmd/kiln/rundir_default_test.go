package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A default directory name taken already (a command started in the same
// second) gets a suffix instead of being shared.
func TestDefaultRunDirIsNotTaken(t *testing.T) {
	t.Chdir(t.TempDir())
	now := time.Now()
	for _, at := range []time.Time{now, now.Add(time.Second)} {
		name := filepath.Join("runs", "lenet-"+at.Format("20060102-150405"))
		for _, d := range []string{name, name + "-2"} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	dir, cleanup := defaultRunDir("lenet")
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() || !strings.HasSuffix(dir, "-3") {
		t.Fatalf("defaultRunDir gave %s (%v): not made, or not the next free suffix", dir, err)
	}
	// Made, so that a second process cannot take the same name.
	if again, _ := defaultRunDir("lenet"); again == dir {
		t.Fatalf("defaultRunDir gave %s twice", dir)
	}
	// Nothing written there: cleanup removes it.
	cleanup()
	if _, err := os.Lstat(dir); err == nil {
		t.Errorf("cleanup left %s", dir)
	}
}

// A command that fails before writing its default directory leaves neither
// it nor the runs/ it made.
func TestDefaultRunDirCleanupRemovesRunsItMade(t *testing.T) {
	t.Chdir(t.TempDir())
	_, cleanup := defaultRunDir("lenet")
	cleanup()
	if _, err := os.Lstat("runs"); err == nil {
		t.Error("runs/ left behind")
	}
}

// The resume commands messages give paste into a shell whatever the path.
func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"runs/lenet-1": "runs/lenet-1", "my runs/a": "'my runs/a'", "it's": `'it'\''s'`, "": "''"} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
