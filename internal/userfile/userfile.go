// Package userfile opens files a user names (data, weights, images,
// configurations) defensively: only regular files, and never more bytes than
// the caller allows, so that /dev/zero, a FIFO or a huge file is a clear
// error instead of a hang or an exhausted memory.
package userfile

import (
	"fmt"
	"io"
	"os"
)

// Open opens path for reading after checking that it is a regular file (a
// symlink to one is fine). The caller closes the file.
func Open(path string) (*os.File, os.FileInfo, error) {
	// Stat before opening: opening a FIFO for reading blocks until a writer
	// comes.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s: not a regular file (%s)", path, kind(fi.Mode()))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	// The path may have been swapped between the two calls.
	if fi, err = f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s: not a regular file", path)
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
		return nil, fmt.Errorf("%s: %d bytes, more than the %d this file may have", path, fi.Size(), limit)
	}
	b, err := readAll(f, fi.Size(), limit)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: more than the %d bytes this file may have", path, limit)
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
