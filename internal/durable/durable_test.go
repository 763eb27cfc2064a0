package durable

import (
	"errors"
	"fmt"
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

// A symbolic link is written through, the link kept; a pipe (as a device,
// not tried here: a regression would replace it) is refused and left as it
// was (--out /dev/stdout, run as root, replaced the device's link with a
// regular file; a FIFO's reader then waited forever).
func TestWriteStreamThroughLinksNotOverDevices(t *testing.T) {
	dir := t.TempDir()
	target, link := filepath.Join(dir, "target.onnx"), filepath.Join(dir, "link.onnx")
	if err := os.WriteFile(target, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("target.onnx", link); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(link, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link was replaced: %v %v", fi.Mode(), err)
	}
	if b, _ := os.ReadFile(target); string(b) != "new" {
		t.Fatalf("the link's file holds %q, want new", b)
	}
	fifo := filepath.Join(dir, "fifo.onnx")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling.onnx")
	if err := os.Symlink("missing.onnx", dangling); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{fifo: "not a regular file", dangling: "does not exist", dir: "is a directory"} {
		err := WriteFile(path, []byte("x"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("WriteFile(%s): %v, want %q", path, err, want)
		}
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Fatalf("the pipe was replaced: %v %v", fi.Mode(), err)
	}
}

// A file written whole takes the umask, as open(2)'s files do, or keeps
// the mode of the file it replaces: it was 0644 always, a umask 077 run's
// weights readable to all beside its 0600 logs.
func TestWriteStreamModes(t *testing.T) {
	dir := t.TempDir()
	fresh, kept := filepath.Join(dir, "fresh"), filepath.Join(dir, "kept")
	if err := os.WriteFile(kept, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(kept, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{fresh, kept} {
		if err := WriteFile(path, []byte("new")); err != nil {
			t.Fatal(err)
		}
	}
	if fi, _ := os.Stat(fresh); fi.Mode().Perm() != 0o666&^umask {
		t.Errorf("a new file: mode %v, want %v under umask %v", fi.Mode().Perm(), 0o666&^umask, umask)
	}
	if fi, _ := os.Stat(kept); fi.Mode().Perm() != 0o600 {
		t.Errorf("a replaced 0600 file: mode %v, want it kept", fi.Mode().Perm())
	}
}

// A file system out of inodes, not bytes, says so: "full" beside megabytes
// free sent the user to free space that was there. (Needs root to mount a
// tmpfs of few inodes: skipped, saying so, elsewhere.)
func TestDiskFullErrorOfInodes(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m,nr_inodes=4"); err != nil {
		t.Skipf("cannot mount a tmpfs of 4 inodes here (%v): the inode message is not checked", err)
	}
	defer syscall.Unmount(dir, 0)
	var last error
	for i := range 10 {
		if last = WriteFile(filepath.Join(dir, fmt.Sprint("f", i)), []byte("x")); last != nil {
			break
		}
	}
	if last == nil || !strings.Contains(last.Error(), "no file (inode) left") {
		t.Fatalf("writing files until the inodes ran out: %v", last)
	}
}

// A name too long for the temporary file beside it is said of the file the
// user named, not of the hidden temporary one.
func TestWriteStreamNamesTheUsersFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), strings.Repeat("a", 250)+".onnx")
	err := WriteFile(path, []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "name is too long") || !strings.HasPrefix(err.Error(), path) {
		t.Fatalf("a 255-byte name: %v", err)
	}
}
