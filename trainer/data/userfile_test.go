package data

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/internal/userfile/userfiletest"
)

// Every data file is opened as a regular file: a FIFO, /dev/zero or a
// directory where a data file should be is an error naming it, at once.
func TestDataFilesRefuseWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	train := filepath.Join(dir, "train.csv")
	writeFile(t, train, []byte(irisLike))
	for _, s := range userfiletest.Specials(t) {
		readers := map[string]func() error{
			"csv train": func() error { _, err := Load("csv", Options{CSV: CSVOptions{Train: s.Path}}); return err },
			"csv dir":   func() error { _, err := Load("csv", Options{Dir: s.Path}); return err },
			"csv test":  func() error { _, err := Load("csv", Options{Dir: train, CSV: CSVOptions{Test: s.Path}}); return err },
			"idx":       func() error { _, _, err := readIDX(s.Path, 3); return err },
			"cifar": func() error {
				_, err := readCIFAR(filepath.Dir(s.Path), []string{filepath.Base(s.Path)}, cifarClasses)
				return err
			},
		}
		for name, read := range readers {
			if name == "csv dir" && s.Kind == "a directory" {
				continue // a directory is where train.csv is looked for
			}
			err := userfiletest.Promptly(t, 5*time.Second, read)
			if err == nil || !strings.Contains(err.Error(), s.Path) || !strings.Contains(err.Error(), s.Kind) {
				t.Errorf("%s from %s: %v, want an error naming it %s", name, s.Path, err, s.Kind)
			}
		}
	}
	// A FIFO as train.csv or test.csv in a data directory.
	for _, name := range []string{"train.csv", "test.csv"} {
		d := t.TempDir()
		writeFile(t, filepath.Join(d, "train.csv"), []byte(irisLike))
		fifo := filepath.Join(d, name)
		os.Remove(fifo)
		if err := mkfifo(fifo); err != nil {
			t.Skip(err)
		}
		err := userfiletest.Promptly(t, 5*time.Second, func() error { _, err := Load("csv", Options{Dir: d}); return err })
		if err == nil || !strings.Contains(err.Error(), fifo) || !strings.Contains(err.Error(), "a named pipe") {
			t.Errorf("%s a FIFO: %v", name, err)
		}
	}
}

// A data file larger than its format's limit is refused unread (these are
// sparse: they use no disk).
func TestDataFilesRefuseOversizedFiles(t *testing.T) {
	dir := t.TempDir()
	sparse := func(name string, size int64) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, nil)
		if err := os.Truncate(p, size); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		limit int64
		read  func(limit int64) error
	}{
		{maxCSVBytes, func(l int64) error {
			_, err := Load("csv", Options{Dir: sparse("big.csv", l+1)})
			return err
		}},
		{maxIDXBytes, func(l int64) error { _, _, err := readIDX(sparse("big-idx3-ubyte", l+1), 3); return err }},
		{maxCIFARBytes, func(l int64) error {
			sparse("big.bin", l+1)
			_, err := readCIFAR(dir, []string{"big.bin"}, cifarClasses)
			return err
		}},
	} {
		alloc, err := userfiletest.Allocated(func() error { return c.read(c.limit) })
		if err == nil || !strings.Contains(err.Error(), fmt.Sprint(c.limit)) {
			t.Errorf("a file of %d bytes: %v, want an error giving the %d-byte limit", c.limit+1, err, c.limit)
		}
		if alloc > 1<<20 {
			t.Errorf("a file of %d bytes: %d bytes allocated before the error", c.limit+1, alloc)
		}
	}
}
