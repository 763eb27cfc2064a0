package data

import (
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"os"
	"testing"
	"time"
)

// realDir finds a real data set or skips the test saying how to get it.
func realDir(t *testing.T, name string) string {
	t.Helper()
	dir, err := Locate(name, "")
	var nf *NotFoundError
	if errors.As(err, &nf) {
		t.Skipf("real %s not available: %v", name, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// headerCount reads the item count from an IDX file's header alone.
func headerCount(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if zr, err := gzip.NewReader(f); err == nil {
		r = zr
	} else {
		f.Seek(0, 0)
	}
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		t.Fatal(err)
	}
	return int(binary.BigEndian.Uint32(hdr[4:]))
}

// stats returns the mean and standard deviation of x.
func stats(x []float32) (mean, std float64) {
	var s, ss float64
	for _, v := range x {
		s += float64(v)
	}
	mean = s / float64(len(x))
	for _, v := range x {
		d := float64(v) - mean
		ss += d * d
	}
	return mean, math.Sqrt(ss / float64(len(x)))
}

func checkRealSplit(t *testing.T, d *Dataset, n int, wantMean, wantStd, tol float64) {
	t.Helper()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if d.Len() != n {
		t.Errorf("%s: %d samples, want %d", d.Name, d.Len(), n)
	}
	var count [10]int
	for _, l := range d.Labels {
		count[l]++ // Validate checked the range
	}
	for c, k := range count {
		if k < n/20 {
			t.Errorf("%s: class %d has only %d of %d samples", d.Name, c, k, n)
		}
	}
	m, s := stats(d.Images)
	if !near(m, wantMean, tol) || !near(s, wantStd, tol) {
		t.Errorf("%s: normalised mean %.4f std %.4f, want %.2f and %.2f", d.Name, m, s, wantMean, wantStd)
	}
}

// testRealIDX loads a real IDX set: all of it, or under the race detector
// the test files only (the training count is then read from its header).
func testRealIDX(t *testing.T, name string, spec idxSpec) (train, test *Dataset) {
	dir := realDir(t, name)
	paths, missing := findIDXFiles(dir)
	if missing != "" {
		t.Fatal(missing)
	}
	if raceEnabled {
		if n := headerCount(t, paths[0]); n != 60000 {
			t.Errorf("%s training file declares %d images, want 60000", name, n)
		}
		part, err := readIDXPair(paths[2], paths[3], 10)
		if err != nil {
			t.Fatal(err)
		}
		test = idxDataset(spec, part)
		// The constants are the training set's statistics; the test set is
		// close to them.
		checkRealSplit(t, test, 10000, 0, 1, 0.03)
		return nil, test
	}
	t0 := time.Now()
	s, err := Load(name, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %s from %s in %v", name, s.Train.Source, time.Since(t0))
	checkRealSplit(t, s.Train, 60000, 0, 1, 0.002)
	checkRealSplit(t, s.Test, 10000, 0, 1, 0.03)
	if s.Val != nil {
		t.Error("a validation split without ValFraction")
	}
	return s.Train, s.Test
}

func TestRealMNIST(t *testing.T) {
	train, test := testRealIDX(t, "mnist", mnistSpec)
	// MNIST has 5923 zeros and 6742 ones for training, 980 and 1135 for test.
	two, err := test.KeepClasses([]int{1, 0})
	if err != nil {
		t.Fatal(err)
	}
	if two.Len() != 2115 || two.Classes[0] != "1" || two.NumClasses() != 2 {
		t.Errorf("classes 1,0 of the test set: %d samples, classes %v", two.Len(), two.Classes)
	}
	if train != nil {
		two, err := train.KeepClasses([]int{0, 1})
		if err != nil {
			t.Fatal(err)
		}
		if two.Len() != 12665 {
			t.Errorf("classes 0,1 of the training set: %d samples, want 12665", two.Len())
		}
	}
}

func TestRealFashionMNIST(t *testing.T) {
	_, test := testRealIDX(t, "fashion-mnist", fashionSpec)
	if test.Classes[9] != "Ankle boot" {
		t.Errorf("class names %v", test.Classes)
	}
}

func TestRealMNISTRotation(t *testing.T) {
	dir := realDir(t, "mnist")
	paths, _ := findIDXFiles(dir)
	part, err := readIDXPair(paths[2], paths[3], 10)
	if err != nil {
		t.Fatal(err)
	}
	a := rotationDataset(part, 7, splitTest)
	b := rotationDataset(part, 7, splitTest)
	c := rotationDataset(part, 8, splitTest)
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	if a.Len() != 10000 || a.Task != Regression || a.TargetScale != 45 {
		t.Fatalf("rotation set: %d samples, task %v, scale %v", a.Len(), a.Task, a.TargetScale)
	}
	lo, hi, sum := 1.0, -1.0, 0.0
	for i, v := range a.Targets {
		if v < -1 || v > 1 {
			t.Fatalf("target %d = %v outside [-1, 1]", i, v)
		}
		if deg := a.TargetValue(float64(v)); math.Abs(deg-rotationAngle(7, splitTest, i)) > 1e-4 {
			t.Fatalf("target %d maps to %v°, angle was %v°", i, deg, rotationAngle(7, splitTest, i))
		}
		lo, hi, sum = min(lo, float64(v)), max(hi, float64(v)), sum+float64(v)
	}
	if lo > -0.98 || hi < 0.98 || math.Abs(sum/10000) > 0.03 {
		t.Errorf("targets not uniform on [-1, 1]: min %v max %v mean %v", lo, hi, sum/10000)
	}
	for i := range a.Images {
		if a.Images[i] != b.Images[i] {
			t.Fatalf("same seed, different image value at %d", i)
		}
	}
	same := 0
	for i := range a.Targets {
		if a.Targets[i] == b.Targets[i] && a.Targets[i] == c.Targets[i] {
			same++
		}
	}
	if same > 10 {
		t.Errorf("seeds 7 and 8 share %d angles", same)
	}
	m, _ := stats(a.Images)
	if !near(m, 0, 0.05) {
		t.Errorf("rotated images' normalised mean %v", m)
	}
	if raceEnabled {
		return
	}
	s, err := Load("mnist-rotation", Options{Seed: 7, Subset: 0.5, ValFraction: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	if s.Train.Len() != 27000 || s.Val.Len() != 3000 || s.Test.Len() != 5000 {
		t.Errorf("split sizes %d/%d/%d, want 27000/3000/5000", s.Train.Len(), s.Val.Len(), s.Test.Len())
	}
	if _, err := Load("mnist-rotation", Options{Classes: []int{1}}); err == nil {
		t.Error("classes accepted for a regression set")
	}
}

// TestRotateBilinear checks the rotation against exact quarter turns, whose
// sample points fall on pixel centres.
func TestRotateBilinear(t *testing.T) {
	const h, w = 6, 6
	src := make([]float32, h*w)
	for i := range src {
		src[i] = float32(i + 1)
	}
	dst := make([]float32, h*w)
	rotateBilinear(dst, src, h, w, 0, 0, 1)
	for i := range src {
		if math.Abs(float64(dst[i]-src[i])) > 1e-5 {
			t.Fatalf("0°: dst[%d] = %v, want %v", i, dst[i], src[i])
		}
	}
	// A counter-clockwise quarter turn: dst(x, y) = src(w-1-y, x).
	rotateBilinear(dst, src, h, w, 90, 0, 1)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			want := src[x*w+(w-1-y)]
			if math.Abs(float64(dst[y*w+x]-want)) > 1e-4 {
				t.Fatalf("90°: dst(%d,%d) = %v, want %v", x, y, dst[y*w+x], want)
			}
		}
	}
	// Offset and scale apply, and outside the source is zero before them.
	rotateBilinear(dst, src, h, w, 45, -2, 0.5)
	if dst[0] != -2 {
		t.Errorf("45°: corner = %v, want the fill value -2", dst[0])
	}
}
