package data

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadCIFAR(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "cifar-10-batches-bin")
	writeCIFAR(t, dir, 7, 5)
	s, err := Load("cifar10", Options{Dir: root})
	if err != nil {
		t.Fatal(err)
	}
	tr, te := s.Train, s.Test
	if tr.Len() != 35 || te.Len() != 5 || tr.Source != dir {
		t.Fatalf("%d/%d samples from %s", tr.Len(), te.Len(), tr.Source)
	}
	if tr.Channels != 3 || tr.Height != 32 || tr.Width != 32 || tr.Classes[0] != "airplane" {
		t.Fatalf("metadata %d×%d×%d %v", tr.Channels, tr.Height, tr.Width, tr.Classes)
	}
	for _, c := range []struct {
		d       *Dataset
		f, r, i int
	}{{tr, 0, 0, 0}, {tr, 2, 3, 17}, {tr, 4, 6, 34}, {te, 5, 4, 4}} {
		if got := c.d.Labels[c.i]; got != int32(cifarLabel(c.f, c.r)) {
			t.Errorf("file %d record %d: label %d", c.f, c.r, got)
		}
		img := c.d.Image(c.i)
		for _, j := range []int{0, 1023, 1024, 2047, 2048, 3071} {
			ch := j / 1024
			want := float32((float64(cifarPixel(c.f, c.r, j))/255 - cifarMean[ch]) / cifarStd[ch])
			if img[j] != want {
				t.Errorf("file %d record %d value %d: %v, want %v", c.f, c.r, j, img[j], want)
			}
		}
	}
	// batches.meta.txt names the classes when present.
	names := "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n"
	writeFile(t, filepath.Join(dir, "batches.meta.txt"), []byte(names))
	s, err = Load("cifar10", Options{Dir: dir, Classes: []int{9, 2}})
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for f := 0; f < 5; f++ {
		for r := 0; r < 7; r++ {
			if l := cifarLabel(f, r); l == 9 || l == 2 {
				want++
			}
		}
	}
	if strings.Join(s.Train.Classes, ",") != "j,c" || s.Train.Len() != want {
		t.Errorf("classes 9,2: %v, %d samples", s.Train.Classes, s.Train.Len())
	}
	for _, l := range s.Train.Labels {
		if l != 0 && l != 1 {
			t.Fatalf("label %d after relabelling", l)
		}
	}
}

func TestCIFARBadInput(t *testing.T) {
	cases := []struct {
		name     string
		content  []byte
		fragment []string
	}{
		{"size", cifarBytes(1, 3)[:3*cifarRecord-1], []string{"size 9218 is not a multiple of 3073"}},
		{"empty", nil, []string{"empty file"}},
		{"label", func() []byte { b := cifarBytes(1, 3); b[2*cifarRecord] = 10; return b }(), []string{"label 10 of record 2 is out of range 0..9"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeCIFAR(t, dir, 3, 3)
			p := filepath.Join(dir, "data_batch_2.bin")
			writeFile(t, p, c.content)
			_, err := Load("cifar10", Options{Dir: dir})
			wantFileError(t, err, p, c.fragment...)
		})
	}
	dir := t.TempDir()
	writeCIFAR(t, dir, 3, 3)
	if err := removeFile(filepath.Join(dir, "data_batch_4.bin")); err != nil {
		t.Fatal(err)
	}
	_, err := Load("cifar10", Options{Dir: dir})
	var nf *NotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("got %v", err)
	}
	wantContains(t, err.Error(), "no data_batch_4.bin", "cifar-10-binary.tar.gz")
}

// A CIFAR-10 folder missing one batch in its cifar-10-batches-bin/ names that
// file (it named data_batch_1.bin, the top folder's first missing file,
// though the subdirectory had it).
func TestCIFARNotFoundNamesTheMissingBatch(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "cifar-10-batches-bin")
	writeCIFAR(t, dir, 2, 2)
	if err := os.Remove(filepath.Join(dir, "data_batch_3.bin")); err != nil {
		t.Fatal(err)
	}
	_, err := Load("cifar10", Options{Dir: root})
	if err == nil || !strings.Contains(err.Error(), "has no data_batch_3.bin") || strings.Contains(err.Error(), "data_batch_1") {
		t.Fatalf("one batch missing: %v", err)
	}
}
