package data

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// idxBytes builds an IDX file: the magic number, the sizes, the payload.
func idxBytes(magic uint32, dims []int, payload []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, magic)
	for _, d := range dims {
		binary.Write(&b, binary.BigEndian, uint32(d))
	}
	b.Write(payload)
	return b.Bytes()
}

func gzipBytes(raw []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(raw)
	w.Close()
	return b.Bytes()
}

// synthPixel and synthLabel define the synthetic IDX sets.
func synthPixel(i, j int) byte { return byte((i*31 + j*7) % 256) }
func synthLabel(i int) byte    { return byte(i % 10) }

const trainMarker, testMarker = 0, 200

// synthIDX makes n images and labels; the last pixel of every image is
// marker, which tells the training file's images from the test file's.
func synthIDX(n int, marker byte) (images, labels []byte) {
	px := make([]byte, n*28*28)
	lb := make([]byte, n)
	for i := 0; i < n; i++ {
		for j := 0; j < 28*28; j++ {
			px[i*28*28+j] = synthPixel(i, j)
		}
		px[i*28*28+783] = marker
		lb[i] = synthLabel(i)
	}
	return idxBytes(idxImagesMagic, []int{n, 28, 28}, px), idxBytes(idxLabelsMagic, []int{n}, lb)
}

// writeIDXSet writes a synthetic MNIST-like set into dir (made if needed)
// and returns the four paths.
func writeIDXSet(t testing.TB, dir string, nTrain, nTest int, gz bool) [4]string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var paths [4]string
	trI, trL := synthIDX(nTrain, trainMarker)
	teI, teL := synthIDX(nTest, testMarker)
	for i, c := range [][]byte{trI, trL, teI, teL} {
		name := idxRoles[i][0]
		if gz {
			c = gzipBytes(c)
			name += ".gz"
		}
		paths[i] = filepath.Join(dir, name)
		writeFile(t, paths[i], c)
	}
	return paths
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// cifarPixel and cifarLabel define the synthetic CIFAR-10 records; file f,
// record r.
func cifarPixel(f, r, j int) byte { return byte((f*13 + r*5 + j*3) % 256) }
func cifarLabel(f, r int) byte    { return byte((f + r) % 10) }

func cifarBytes(f, n int) []byte {
	out := make([]byte, 0, n*cifarRecord)
	for r := 0; r < n; r++ {
		out = append(out, cifarLabel(f, r))
		for j := 0; j < cifarPixels; j++ {
			out = append(out, cifarPixel(f, r, j))
		}
	}
	return out
}

// writeCIFAR writes five training batches of n records (file f = 0..4) and
// a test batch of nTest (f = 5) into dir.
func writeCIFAR(t testing.TB, dir string, n, nTest int) {
	t.Helper()
	for f, name := range cifarTrainFiles {
		writeFile(t, filepath.Join(dir, name), cifarBytes(f, n))
	}
	writeFile(t, filepath.Join(dir, cifarTestFile), cifarBytes(5, nTest))
}

// wantFileError checks that err is one clear line: a *FileError naming path
// whose message contains every fragment.
func wantFileError(t *testing.T, err error, path string, fragments ...string) {
	t.Helper()
	var fe *FileError
	if !errors.As(err, &fe) {
		t.Fatalf("got %v (%T), want a *FileError", err, err)
	}
	if fe.Path != path {
		t.Errorf("error names %q, want %q: %v", fe.Path, path, err)
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("error spans lines: %q", msg)
	}
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Errorf("error %q does not mention %q", msg, f)
		}
	}
}

func near(a, b, tol float64) bool { return a-b <= tol && b-a <= tol }

func removeFile(p string) error { return os.Remove(p) }

func wantContains(t *testing.T, msg string, fragments ...string) {
	t.Helper()
	if strings.Contains(msg, "\n") {
		t.Errorf("message spans lines: %q", msg)
	}
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Errorf("%q does not mention %q", msg, f)
		}
	}
}
