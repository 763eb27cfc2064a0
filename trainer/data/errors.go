package data

import "fmt"

// FileError reports a data file that cannot be used: which file, and what is
// wrong with it.
type FileError struct {
	Path    string // the file (or directory) at fault
	Problem string // what is wrong, in words
}

func (e *FileError) Error() string { return fmt.Sprintf("data: %s: %s", e.Path, e.Problem) }

func fileErr(path, format string, args ...any) *FileError {
	return &FileError{Path: path, Problem: fmt.Sprintf(format, args...)}
}
