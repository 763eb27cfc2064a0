package userfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/internal/userfile/userfiletest"
)

func TestReadFileRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"/dev/zero": "a device", fifo: "a named pipe", dir: "a directory"} {
		if _, err := ReadFile(path, 1<<20); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadFile(%s) = %v, want an error saying %q", path, err, want)
		}
	}
}

func TestReadFileBoundsTheSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 100), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(path, 100); err != nil || len(b) != 100 {
		t.Fatalf("ReadFile at the limit: %d bytes, %v", len(b), err)
	}
	if _, err := ReadFile(path, 99); err == nil || !strings.Contains(err.Error(), "100 bytes") {
		t.Fatalf("ReadFile past the limit: %v", err)
	}
}

// A file is read into one buffer of its size, not grown into one: a 16 MB
// file costs 16 MB.
func TestReadFileAllocatesWhatTheFileHolds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, make([]byte, 16<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	var b []byte
	alloc, err := userfiletest.Allocated(func() (err error) {
		b, err = ReadFile(path, 1<<30)
		return err
	})
	if err != nil || len(b) != 16<<20 {
		t.Fatalf("ReadFile: %d bytes, %v", len(b), err)
	}
	if alloc > 17<<20 {
		t.Errorf("%d bytes allocated to read a 16 MiB file", alloc)
	}
}

// A FIFO put in the file's place between the check and the open is refused,
// not waited on.
func TestOpenRefusesAFileSwappedForAFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	afterStat = func(p string) {
		if err := os.Remove(p); err != nil {
			t.Error(err)
		}
		if err := syscall.Mkfifo(p, 0o600); err != nil {
			t.Error(err)
		}
	}
	defer func() { afterStat = func(string) {} }()
	err := userfiletest.Promptly(t, 5*time.Second, func() error {
		f, _, err := Open(path)
		if err == nil {
			f.Close()
		}
		return err
	})
	var ue *Error
	if !errors.Is(err, ErrNotRegular) || !errors.As(err, &ue) || ue.Path != path {
		t.Errorf("Open of a file swapped for a FIFO: %v", err)
	}
}
