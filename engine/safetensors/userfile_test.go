package safetensors_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/engine/safetensors"
	"github.com/kiln-ml/kiln/internal/userfile/userfiletest"
)

// Weights and checkpoints are files a user names: a FIFO, /dev/zero or a
// directory is an error naming it, at once.
func TestReadFileRefusesWhatIsNotARegularFile(t *testing.T) {
	for _, s := range userfiletest.Specials(t) {
		err := userfiletest.Promptly(t, 5*time.Second, func() error {
			_, _, err := safetensors.ReadFile(s.Path)
			return err
		})
		if err == nil || !strings.Contains(err.Error(), s.Path) || !strings.Contains(err.Error(), s.Kind) {
			t.Errorf("ReadFile(%s) = %v, want an error naming it %s", s.Path, err, s.Kind)
		}
	}
}

// ReadFile allocates what the header justifies and the file holds, and
// checks the first against the second before reading the tensors.
func TestReadFileTrustsNoSizeBeforeChecking(t *testing.T) {
	dir := t.TempDir()
	claims := filepath.Join(dir, "claims.safetensors") // 2^40 bytes of tensors in 100 bytes
	b := file(`{"a":{"dtype":"U8","shape":[1099511627776],"data_offsets":[0,1099511627776]}}`, nil)
	b = append(b, make([]byte, 100-len(b))...)
	if err := os.WriteFile(claims, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// A gigabyte of zeros (sparse: no disk used) is not safetensors from
	// its first 8 bytes on: reading the rest would only cost memory.
	zeros := filepath.Join(dir, "zeros.safetensors")
	if err := os.WriteFile(zeros, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(zeros, 1<<30); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{claims: "run past the", zeros: "does not start with '{'"} {
		alloc, err := userfiletest.Allocated(func() error {
			_, _, err := safetensors.ReadFile(path)
			return err
		})
		if !errors.Is(err, safetensors.ErrFormat) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: %v, want a format error naming the file and saying %q", path, err, want)
		}
		if alloc > 1<<20 {
			t.Errorf("%s: %d bytes allocated before the error", path, alloc)
		}
	}
}

// zeroReader is /dev/zero as a stream.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// Read reads no further than the header says: a valid file followed by an
// endless stream is an error about the bytes after the tensors, not a read
// that never ends.
func TestReadStopsWhereTheHeaderSays(t *testing.T) {
	ok := file(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8))
	err := userfiletest.Promptly(t, 5*time.Second, func() error {
		_, _, err := safetensors.Read(io.MultiReader(bytes.NewReader(ok), zeroReader{}))
		return err
	})
	if !errors.Is(err, safetensors.ErrFormat) || !strings.Contains(err.Error(), "after the header") {
		t.Errorf("a file and an endless stream: %v", err)
	}
	for n := range len(ok) {
		if _, _, err := safetensors.Read(bytes.NewReader(ok[:n])); !errors.Is(err, safetensors.ErrFormat) {
			t.Fatalf("a stream of the first %d of %d bytes: %v", n, len(ok), err)
		}
	}
	if ts, _, err := safetensors.Read(bytes.NewReader(ok)); err != nil || ts["a"].Len() != 2 {
		t.Fatalf("Read of a valid file: %v", err)
	}
}
