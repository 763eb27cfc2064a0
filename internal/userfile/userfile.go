// Package userfile opens files a user names (data, weights, images,
// configurations) defensively: only regular files, and never more bytes than
// the caller allows, so that /dev/zero, a FIFO or a huge file is a clear
// error instead of a hang or an exhausted memory.
package userfile

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrNotRegular is wrapped by the error about a path that is not a regular
// file (a directory, a FIFO, a device, a socket).
var ErrNotRegular = errors.New("not a regular file")

// Error is what is wrong with a file Open or ReadFile refused: Error()
// names the path, Err says the rest, for callers that name the path
// themselves.
type Error struct {
	Path string
	Err  error
}

func (e *Error) Error() string { return e.Path + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// afterStat runs between Open's Stat and its open: tests swap the file
// there.
var afterStat = func(string) {}

// Open opens path for reading after checking that it is a regular file (a
// symlink to one is fine). The caller closes the file.
func Open(path string) (*os.File, os.FileInfo, error) {
	// Stat before opening: opening a FIFO for reading blocks until a writer
	// comes.
	fi, err := os.Stat(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			pe.Op = "open" // what the caller asked for; the Stat is ours
		}
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, &Error{path, fmt.Errorf("%w (%s)", ErrNotRegular, kind(fi.Mode()))}
	}
	afterStat(path)
	// Non-blocking, in case a FIFO took the file's place since the Stat:
	// the open then returns at once and the check below refuses it. Reads
	// of a regular file do not block whatever the flag.
	f, err := os.OpenFile(path, os.O_RDONLY|nonBlock, 0)
	if err != nil {
		return nil, nil, err
	}
	if fi, err = f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, &Error{path, fmt.Errorf("%w (it changed while being opened)", ErrNotRegular)}
	}
	return f, fi, nil
}

// ReadFile reads a whole regular file of at most limit bytes; a larger one
// is an error that names the file, its size and the limit.
func ReadFile(path string, limit int64) ([]byte, error) {
	f, fi, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi.Size() > limit {
		return nil, &Error{path, fmt.Errorf("%d bytes, more than the %d this file may have", fi.Size(), limit)}
	}
	b, err := readAll(f, fi.Size(), limit)
	if err != nil {
		return nil, &Error{path, err}
	}
	if int64(len(b)) > limit {
		return nil, &Error{path, fmt.Errorf("more than the %d bytes this file may have", limit)}
	}
	return b, nil
}

// readAll reads f to its end into one buffer of the size it had when
// stat'ed (io.ReadAll would grow one, allocating twice the file), growing it
// only for a file that grew since, and reading at most limit+1 bytes.
func readAll(f io.Reader, size, limit int64) ([]byte, error) {
	b := make([]byte, 0, size+1) // +1: the read that finds the end
	r := io.LimitReader(f, limit+1)
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func kind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeNamedPipe != 0:
		return "a named pipe"
	case m&os.ModeDevice != 0, m&os.ModeCharDevice != 0:
		return "a device"
	case m&os.ModeSocket != 0:
		return "a socket"
	}
	return m.Type().String()
}
