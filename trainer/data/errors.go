package data

import "fmt"

// FileError reports a data file that cannot be used: which file, and what is
// wrong with it.
type FileError struct {
	Path    string // the file (or directory) at fault
	Problem string // what is wrong, in words
	Err     error  // the I/O error beneath, when there is one (a missing file's *fs.PathError)
}

func (e *FileError) Error() string { return fmt.Sprintf("data: %s: %s", e.Path, e.Problem) }
func (e *FileError) Unwrap() error { return e.Err }

// ioErr is the FileError of an error opening or reading path: its words
// without the path again, the error kept beneath (a tune tells a missing
// file, which a resume can mend, from a bad one).
func ioErr(path string, err error) *FileError {
	return &FileError{Path: path, Problem: ioProblem(err), Err: err}
}

func fileErr(path, format string, args ...any) *FileError {
	return &FileError{Path: path, Problem: fmt.Sprintf(format, args...)}
}
