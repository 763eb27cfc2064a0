package durable

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestWriteStreamKeepsTheOldFileOnError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.json")
	if err := WriteFile(path, []byte("old")); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := WriteStream(path, func(w io.Writer) error {
		w.Write([]byte("half of the new"))
		return boom
	})
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), path) {
		t.Fatalf("got %v, want boom naming %s", err, path)
	}
	if b, _ := os.ReadFile(path); string(b) != "old" {
		t.Fatalf("file now holds %q", b)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temporary file left: %v", entries)
	}
}

func TestTempOfRecognisesOnlyItsOwnNames(t *testing.T) {
	for name, want := range map[string]string{
		".metrics.jsonl.tmp123456": "metrics.jsonl",
		".a.tmp.tmp9":              "a.tmp",
		".notes.tmpl":              "",
		".metrics.jsonl.tmp":       "",
		"metrics.jsonl.tmp123":     "",
		"..tmp1":                   "",
	} {
		base, ok := TempOf(name)
		if base != want || ok != (want != "") {
			t.Errorf("TempOf(%q) = %q, %v; want %q", name, base, ok, want)
		}
	}
}

func TestTruncateOnlyShortens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(path, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Truncate(path, 4); err != nil {
		t.Fatal(err)
	}
	if err := Truncate(path, 8); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "0123" {
		t.Fatalf("file holds %q", b)
	}
}

func TestDiskFullErrorNamesTheDisk(t *testing.T) {
	dir := t.TempDir()
	err := wrap(filepath.Join(dir, "checkpoint.safetensors"), &os.PathError{Op: "write", Path: "x", Err: syscall.ENOSPC})
	var full *DiskFullError
	if !errors.As(err, &full) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("got %T %v", err, err)
	}
	for _, want := range []string{"the disk holding " + dir + " is full", "free there"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q lacks %q", err, want)
		}
	}
	// Wrapped again on its way out (a File's write inside WriteStream), it
	// says so once.
	if again := wrap(filepath.Join(dir, "checkpoint.safetensors"), err); again.Error() != err.Error() {
		t.Errorf("wrapped twice: %q", again)
	}
}
