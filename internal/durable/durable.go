// Package durable is the one place where Kiln changes files that must
// survive a kill or a full disk: a run directory's checkpoints, weights,
// metrics and logs, a tune's state. A file is either replaced whole
// (WriteFile, WriteStream: a temporary file, fsync, rename, fsync of the
// directory, so a kill at any moment leaves the old version or the new one)
// or appended to (Append), and nothing else.
//
// Every mutation (create, write, sync, rename, remove, truncate) passes
// through one hook, so that a test can kill the process, or fail the write as
// a full disk does, at each of them in turn (fault.go, build tag
// faultinject). Without the tag the hook does nothing.
package durable

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Kinds of mutation, as the fault hook sees them.
const (
	OpCreate   = "create"
	OpWrite    = "write"
	OpSync     = "sync"
	OpRename   = "rename"
	OpRemove   = "remove"
	OpTruncate = "truncate"
)

// TempPrefix and tempInfix make a temporary file's name: ".<base>.tmp<digits>".
// TempOf recognises them, so that what a kill left behind can be removed.
const (
	TempPrefix = "."
	tempInfix  = ".tmp"
)

// TempOf reports whether name is a temporary file of WriteStream's, and the
// name of the file it was to replace.
func TempOf(name string) (base string, ok bool) {
	rest, ok := strings.CutPrefix(name, TempPrefix)
	if !ok {
		return "", false
	}
	i := strings.LastIndex(rest, tempInfix)
	if i <= 0 {
		return "", false
	}
	digits := rest[i+len(tempInfix):]
	if digits == "" || strings.Trim(digits, "0123456789") != "" {
		return "", false
	}
	return rest[:i], true
}

// RemoveTemps removes the temporary files that kills during WriteStream
// left in dir, of the files for which of(name) is true: nobody else's.
func RemoveTemps(dir string, of func(name string) bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if base, ok := TempOf(e.Name()); ok && of(base) {
			if err := Remove(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteFile replaces path with data, atomically.
func WriteFile(path string, data []byte) error {
	return WriteStream(path, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteStream replaces path with what write writes (through a buffer),
// atomically: a temporary file in the same directory, fsync, rename, fsync
// of the directory. On any error the temporary file is removed and path is
// as it was.
func WriteStream(path string, write func(io.Writer) error) (err error) {
	named := path
	if path, err = replaceable(path); err != nil {
		return err
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if err := hook(OpCreate, path); err != nil {
		return wrap(path, err)
	}
	f, err := os.CreateTemp(dir, TempPrefix+base+tempInfix+"*")
	if err != nil {
		return tempError(named, dir, err)
	}
	file := &File{f: f, path: path}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = wrap(path, err)
		}
	}()
	bw := bufio.NewWriterSize(file, 1<<20)
	if err = write(bw); err != nil {
		return err
	}
	if err = bw.Flush(); err != nil {
		return err
	}
	// The replaced file's mode, or a new file's as open(2) gives it under
	// the umask (0644 always made a umask 077 run's weights readable to
	// all, beside its 0600 logs). A file system without modes (a FUSE vfat)
	// keeps its own.
	if err = f.Chmod(modeFor(path)); err != nil && !errors.Is(err, syscall.ENOSYS) && !errors.Is(err, syscall.ENOTSUP) {
		return err
	}
	if err = file.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = Rename(f.Name(), path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// umask is the process's file mode creation mask, read once (umask(2) can
// only be read by setting it, so before anything else runs).
var umask = func() os.FileMode {
	u := syscall.Umask(0)
	syscall.Umask(u)
	return os.FileMode(u)
}()

// modeFor is the permission bits a file written whole at path gets: the
// file's own when it is there, else those of a new file under the umask.
func modeFor(path string) os.FileMode {
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		return fi.Mode().Perm()
	}
	return 0o666 &^ umask
}

// replaceable is the file WriteStream replaces for path: path itself, or the
// file a symbolic link names (the link is kept, as a write through open(2)
// keeps it). A device, pipe or socket is refused, not renamed over: a
// user's --out /dev/stdout, run as root, replaced the device's link with a
// regular file. So is a link to nothing (where open(2) would create its
// target): it more likely names a file that moved than one to make.
func replaceable(path string) (string, error) {
	lfi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return path, nil
	}
	if err != nil {
		return "", wrap(path, err)
	}
	fi, err := os.Stat(path)
	switch {
	case lfi.Mode()&os.ModeSymlink != 0 && errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("%s: a symbolic link to a file that does not exist; name the file itself", path)
	case err != nil:
		return "", wrap(path, err)
	case fi.IsDir():
		return "", fmt.Errorf("%s: is a directory", path)
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("%s: not a regular file (%v): Kiln writes its files whole and replaces them atomically, so it names a file in a folder, not a device or a pipe", path, fi.Mode().Type())
	case lfi.Mode()&os.ModeSymlink == 0:
		return path, nil
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", wrap(path, err)
	}
	return real, nil
}

// File is a file opened for appending; its writes and syncs pass through the
// fault hook.
type File struct {
	f    *os.File
	path string
}

// Append opens path for appending, creating it when missing.
func Append(path string) (*File, error) {
	if err := hook(OpCreate, path); err != nil {
		return nil, wrap(path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o666) // under the umask, as WriteStream's files
	if err != nil {
		return nil, err
	}
	return &File{f: f, path: path}, nil
}

// CreateNew creates path, which must not exist yet, for appending.
func CreateNew(path string) (*File, error) {
	if err := hook(OpCreate, path); err != nil {
		return nil, wrap(path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o666)
	if err != nil {
		return nil, err
	}
	return &File{f: f, path: path}, nil
}

// Name is the file's path.
func (f *File) Name() string { return f.path }

// Write writes b in one write call, so a concurrent reader sees whole lines.
func (f *File) Write(b []byte) (int, error) {
	if err := hook(OpWrite, f.path); err != nil {
		return 0, wrap(f.path, err)
	}
	n, err := f.f.Write(b)
	if err != nil {
		err = wrap(f.path, err) // a full disk or a file-size limit said as such, appends too
	}
	return n, err
}

// Sync makes what was written durable.
func (f *File) Sync() error {
	if err := hook(OpSync, f.path); err != nil {
		return wrap(f.path, err)
	}
	return f.f.Sync()
}

// Size is the file's current size.
func (f *File) Size() (int64, error) {
	fi, err := f.f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }

// Rename renames oldpath to newpath.
func Rename(oldpath, newpath string) error {
	if err := hook(OpRename, newpath); err != nil {
		return wrap(newpath, err)
	}
	return os.Rename(oldpath, newpath)
}

// Remove removes path; a missing file is not an error.
func Remove(path string) error {
	if err := hook(OpRemove, path); err != nil {
		return wrap(path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Truncate cuts path down to size bytes and syncs it; a file already no
// longer than that is left alone.
func Truncate(path string, size int64) error {
	fi, err := os.Stat(path)
	if err != nil || fi.Size() <= size {
		return err
	}
	if err := hook(OpTruncate, path); err != nil {
		return wrap(path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// SyncFile makes what was written to path, through any handle, durable:
// for files appended to a line at a time, each write closing its handle.
// It is a directory's sync: fsync of a handle opened for it.
func SyncFile(path string) error { return SyncDir(path) }

// SyncDir makes the renames and creations in dir durable.
func SyncDir(dir string) error {
	if err := hook(OpSync, dir); err != nil {
		return wrap(dir, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// hook is called before each mutation; fault.go sets it in builds with the
// faultinject tag.
var hook = func(op, path string) error { return nil }

// tempError is WriteStream's failure to make its temporary file, said of
// the file the user named (the error named the hidden temporary one).
func tempError(path, dir string, err error) error {
	switch {
	case errors.Is(err, syscall.ENAMETOOLONG):
		return fmt.Errorf("%s: the name is too long for the temporary file written beside it first (%s%s%s and 10 digits): shorten it",
			path, TempPrefix, filepath.Base(path), tempInfix)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s: cannot create a file in %s (permission denied): it is written to a temporary file there first, then renamed over", path, dir)
	}
	return wrap(path, err)
}

// wrap adds the path to an error that lacks it, and, for a full disk, how
// much space is left where path lives.
func wrap(path string, err error) error {
	var full *DiskFullError
	var big *FileSizeError
	if errors.As(err, &full) || errors.As(err, &big) { // already said (a write through File, then WriteStream)
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return &DiskFullError{Path: path, Err: err}
	}
	if errors.Is(err, syscall.EFBIG) {
		return &FileSizeError{Path: path, Err: err}
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return err
	}
	return fmt.Errorf("write %s: %w", path, err)
}

// DiskFullError is a write that failed because the file system holding Path
// is full (or the user's quota is spent).
type DiskFullError struct {
	Path string
	Err  error
}

func (e *DiskFullError) Error() string {
	dir := filepath.Dir(e.Path)
	msg := fmt.Sprintf("writing %s: the disk holding %s is full (%v)", e.Path, dir, e.Err)
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) == nil {
		if st.Files > 0 && st.Ffree == 0 {
			// Out of inodes, not bytes: "full" beside megabytes free
			// sent the user to free space that was there.
			return fmt.Sprintf("writing %s: the file system holding %s has no file (inode) left for a new file (%v), though %s are free there: "+
				"remove files (many small ones), or use another file system", e.Path, dir, e.Err, formatBytes(int64(st.Bavail)*int64(st.Bsize)))
		}
		msg += fmt.Sprintf("; %s free there", formatBytes(int64(st.Bavail)*int64(st.Bsize)))
	}
	return msg
}

func (e *DiskFullError) Unwrap() error { return e.Err }

// FileSizeError is a write past the process's file-size limit (ulimit -f),
// which was said of a temporary file with no hint.
type FileSizeError struct {
	Path string
	Err  error
}

func (e *FileSizeError) Error() string {
	var lim syscall.Rlimit
	limit := ""
	if syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim) == nil && lim.Cur != ^uint64(0) {
		limit = " of " + formatBytes(int64(lim.Cur))
	}
	return fmt.Sprintf("writing %s: %v: past this process's file-size limit%s (ulimit -f); raise it, and --resume continues the run",
		e.Path, e.Err, limit)
}

func (e *FileSizeError) Unwrap() error { return e.Err }

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
