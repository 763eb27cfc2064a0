// Package userfiletest holds what the tests of every reader of user files
// share: paths that are not regular files, and a deadline so that a reader
// that hangs on one fails its test instead of blocking the suite.
package userfiletest

import (
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

// Special is a path that is not a regular file and the word the error about
// it must contain.
type Special struct {
	Path, Kind string
}

// Specials returns a directory, a FIFO nobody writes to and /dev/zero (read
// without limit it never ends), made under a temporary directory.
func Specials(t testing.TB) []Special {
	t.Helper()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := mkfifo(fifo); err != nil {
		t.Skipf("no FIFO here: %v", err)
	}
	return []Special{{dir, "a directory"}, {fifo, "a named pipe"}, {"/dev/zero", "a device"}}
}

// Promptly runs f and returns its error, failing the test if f has not
// returned within d (it is then left running: the test binary ends soon).
func Promptly(t testing.TB, d time.Duration, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("still running after %v: a read that hangs or never ends", d)
		return nil
	}
}

// Allocated returns how many bytes the process allocated while f ran, and
// f's error. Other goroutines' allocations count too: keep tests that use it
// off t.Parallel.
func Allocated(f func() error) (uint64, error) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, err
}
