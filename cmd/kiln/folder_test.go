package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/trainer"
	"github.com/kiln-ml/kiln/trainer/data"
)

// writeImageFolder writes ds's samples as image files under dir/<class>/,
// every jpegEvery-th as a JPEG (quality 95) and the others as PNGs, over
// every core. The pixels are ds's bytes again (its normalisation undone).
func writeImageFolder(t testing.TB, ds *data.Dataset, dir string, jpegEvery int) {
	t.Helper()
	for _, c := range ds.Classes {
		if err := os.MkdirAll(filepath.Join(dir, c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One zlib state a goroutine: png.Encode would allocate and
			// clear one a file, most of its time for a 28×28 image.
			enc := &png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: &onePNGBuffer{}}
			for i := int(next.Add(1) - 1); i < ds.Len(); i = int(next.Add(1) - 1) {
				if err := writeSample(ds, i, dir, enc, jpegEvery > 0 && i%jpegEvery == 0); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		t.Fatal(err)
	}
}

// onePNGBuffer is a png.EncoderBufferPool of one buffer, for one goroutine.
type onePNGBuffer struct{ b *png.EncoderBuffer }

func (p *onePNGBuffer) Get() *png.EncoderBuffer  { return p.b }
func (p *onePNGBuffer) Put(b *png.EncoderBuffer) { p.b = b }

func writeSample(ds *data.Dataset, i int, dir string, enc *png.Encoder, asJPEG bool) error {
	img := image.NewGray(image.Rect(0, 0, ds.Width, ds.Height))
	for j, v := range ds.Image(i) {
		img.Pix[j] = byte(math.Round((float64(v)*ds.Std[0] + ds.Mean[0]) * 255))
	}
	var b bytes.Buffer
	name := fmt.Sprintf("%05d.png", i)
	var err error
	if asJPEG {
		name = fmt.Sprintf("%05d.jpg", i)
		err = jpeg.Encode(&b, img, &jpeg.Options{Quality: 95})
	} else {
		err = enc.Encode(&b, img)
	}
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ds.Classes[ds.Labels[i]], name), b.Bytes(), 0o644)
}

// mnistFolder writes real MNIST as an image folder: the training set as
// train/, the test set as test/, one image in 20 a JPEG, plus one broken
// file that the load skips and names.
func mnistFolder(t *testing.T) string {
	t.Helper()
	needMNIST(t)
	s, err := data.Load("mnist", data.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	start := time.Now()
	writeImageFolder(t, s.Train, filepath.Join(dir, "train"), 20)
	writeImageFolder(t, s.Test, filepath.Join(dir, "test"), 20)
	if err := os.WriteFile(filepath.Join(dir, "train", "3", "broken.png"), []byte("\x89PNG\r\n\x1a\nnot really"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d + %d MNIST images as PNG and JPEG files in %v", s.Train.Len(), s.Test.Len(), time.Since(start).Round(time.Millisecond))
	return dir
}

// Issue 14's bar on real pictures: LeNet trained 3 epochs on MNIST written
// out as PNG and JPEG files reaches 99.0% test accuracy, as the built-in
// loader's run does (99.11% with the same settings); model.json carries the folder
// names and the training split's mean and std, summary.json the broken
// file; a second run reads the decoded cache; kiln predict names classes.
func TestFolderMNISTAccuracy(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: writes all of MNIST as image files and trains LeNet 3 epochs (about 40 s on two cores)")
	}
	dir := mnistFolder(t)
	run := filepath.Join(t.TempDir(), "run")
	start := time.Now()
	r := mustRun(t, dir, "train", "--model", "lenet", "--dataset", "folder", "--data-dir", dir, "--epochs", "3",
		"--batch", "64", "--seed", "1", "--device", "cpu", "--no-visuals", "--run-dir", run)
	t.Logf("first run (decoding 70000 files, 3 epochs): %v", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(r.stderr, "broken.png") || !strings.Contains(r.stderr, "decoded images cached in") {
		t.Errorf("the log does not name the broken file or the cache:\n%s", r.stderr)
	}
	s := readSummary(t, run)
	if s.TestAccuracy == nil || *s.TestAccuracy < 0.990 {
		t.Fatalf("test accuracy %v, want at least 99.0%%", s.TestAccuracy)
	}
	t.Logf("folder test accuracy %.2f%% at %.0f images/s", 100**s.TestAccuracy, s.TrainImagesPerSec)
	if s.SkippedFiles == nil || s.SkippedFiles.Count != 1 || !strings.Contains(s.SkippedFiles.First[0], "broken.png") {
		t.Errorf("summary.json skipped_files %+v, want the broken file", s.SkippedFiles)
	}
	checkFolderModelJSON(t, run)
	start = time.Now()
	r = mustRun(t, dir, "train", "--model", "lenet", "--dataset", "folder", "--data-dir", dir, "--epochs", "1", "--subset", "0.01",
		"--seed", "1", "--device", "cpu", "--no-visuals", "--run-dir", filepath.Join(t.TempDir(), "again"))
	if !strings.Contains(r.stderr, "read from the cache") {
		t.Errorf("the second run did not read the cache:\n%s", r.stderr)
	}
	t.Logf("second run (cache, 1%% for 1 epoch): %v", time.Since(start).Round(time.Millisecond))
	checkFolderPredict(t, dir, run)
}

func checkFolderModelJSON(t *testing.T, run string) {
	t.Helper()
	info, err := trainer.ReadModelInfo(run)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(info.Classes, "") != "0123456789" || len(info.Mean) != 1 || math.Abs(info.Mean[0]-0.1307) > 0.001 || math.Abs(info.Std[0]-0.3081) > 0.001 {
		t.Errorf("model.json classes %v, mean %v, std %v: want the folder names and MNIST's figures", info.Classes, info.Mean, info.Std)
	}
}

// checkFolderPredict runs kiln predict on a few of the test files, by
// name and by folder, and checks the class names it prints.
func checkFolderPredict(t *testing.T, dir, run string) {
	t.Helper()
	a, b := filepath.Join(dir, "test", "7", "00000.jpg"), filepath.Join(dir, "test", "2", "00001.png")
	r := mustRun(t, dir, "predict", "--run", run, "--device", "cpu", "--image", a, b, "--top", "2")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], a+": 7 ") || !strings.HasPrefix(lines[1], b+": 2 ") {
		t.Errorf("predict --image %s %s:\n%s", a, b, r.stdout)
	}
	r = mustRun(t, dir, "predict", "--run", run, "--device", "cpu", "--dir", filepath.Join(dir, "test", "0"), "--json")
	lines = strings.Split(strings.TrimSpace(r.stdout), "\n")
	right := 0
	for _, l := range lines {
		var p prediction
		if err := json.Unmarshal([]byte(l), &p); err != nil {
			t.Fatalf("%v in %q", err, l)
		}
		if len(p.Top) == 3 && p.Top[0].Name == "0" {
			right++
		}
	}
	if len(lines) != 980 || right < 970 {
		t.Errorf("predict --dir test/0: %d lines, %d say 0; want 980 lines, nearly all 0", len(lines), right)
	}
}

// Fashion-MNIST written out as files (10% of it: 6000 training and 1000 test
// images, PNG with one in 20 JPEG; "T-shirt/top" becomes the folder
// "T-shirt-top") trains LeNet as the built-in loader does on the same
// images: test accuracies within 3 points (their data orders and
// validation draws differ). A loader that mislabelled a class or
// misplaced pixels would lose far more.
func TestFolderFashionMNISTMatchesTheBuiltInLoader(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: trains LeNet twice on 10% of Fashion-MNIST (about 15 s)")
	}
	s, err := data.Load("fashion-mnist", data.Options{Subset: 0.1, Seed: 1})
	if err != nil {
		t.Skipf("skipped: Fashion-MNIST not installed (Debian: apt-get install dataset-fashion-mnist): %v", err)
	}
	dir := t.TempDir()
	for split, ds := range map[string]*data.Dataset{"train": s.Train, "test": s.Test} {
		named := *ds
		named.Classes = make([]string, len(ds.Classes))
		for i, c := range ds.Classes {
			named.Classes[i] = strings.ReplaceAll(c, "/", "-")
		}
		writeImageFolder(t, &named, filepath.Join(dir, split), 20)
	}
	args := []string{"--model", "lenet", "--epochs", "3", "--batch", "64", "--seed", "1", "--device", "cpu", "--no-visuals"}
	folderRun, builtinRun := filepath.Join(t.TempDir(), "folder"), filepath.Join(t.TempDir(), "builtin")
	mustRun(t, dir, append([]string{"train", "--dataset", "folder", "--data-dir", dir, "--run-dir", folderRun}, args...)...)
	mustRun(t, dir, append([]string{"train", "--dataset", "fashion-mnist", "--subset", "0.1", "--run-dir", builtinRun}, args...)...)
	f, b := readSummary(t, folderRun), readSummary(t, builtinRun)
	if f.TestAccuracy == nil || b.TestAccuracy == nil || math.Abs(*f.TestAccuracy-*b.TestAccuracy) > 0.03 {
		t.Fatalf("test accuracy: folder %v, built-in loader %v; want within 3 points", f.TestAccuracy, b.TestAccuracy)
	}
	t.Logf("Fashion-MNIST 10%%, LeNet 3 epochs: folder %.2f%%, built-in %.2f%%", 100**f.TestAccuracy, 100**b.TestAccuracy)
	m, err := trainer.ReadModelInfo(folderRun)
	if err != nil || !slices.Contains(m.Classes, "T-shirt-top") || len(m.Classes) != 10 {
		t.Errorf("model.json classes %v (%v)", m.Classes, err)
	}
}

// An image folder's val/ is its validation split at --val-fraction 0, so
// early stopping on val_acc trains; without val/ it is refused before a
// run directory is made (it was refused for both, by val_fraction alone).
func TestFolderValFolderIsAValidationSplit(t *testing.T) {
	needMNIST(t)
	s, err := data.Load("mnist", data.Options{})
	if err != nil {
		t.Fatal(err)
	}
	first := func(ds *data.Dataset, from, n int) *data.Dataset {
		idx := make([]int, n)
		for i := range idx {
			idx[i] = from + i
		}
		sel, err := ds.Select(idx)
		if err != nil {
			t.Fatal(err)
		}
		return sel
	}
	dir := t.TempDir()
	folder := filepath.Join(dir, "digits")
	writeImageFolder(t, first(s.Train, 0, 300), filepath.Join(folder, "train"), 0)
	writeImageFolder(t, first(s.Train, 300, 100), filepath.Join(folder, "val"), 0)
	args := []string{"train", "--dataset", "folder", "--data-dir", folder, "--val-fraction", "0", "--early-stop", "val_acc",
		"--epochs", "1", "--batch", "32", "--schedule", "constant", "--lr", "0.01", "--no-visuals"}
	if r := kiln(t, dir, append(args, "--run-dir", "with-val")...); r.code != 0 {
		t.Fatalf("with val/: exit %d\n%s", r.code, r.stderr)
	}
	// What the load said (no test/ here) is in train.log too, not only on
	// the console before the run directory was open.
	if b, err := os.ReadFile(filepath.Join(dir, "with-val", trainer.LogFile)); err != nil || !strings.Contains(string(b), `"from":"data"`) {
		t.Errorf("train.log holds no note of the data's load (%v)", err)
	}
	if err := os.RemoveAll(filepath.Join(folder, "val")); err != nil {
		t.Fatal(err)
	}
	r := kiln(t, dir, append(args, "--run-dir", "without-val")...)
	if r.code != 2 || !strings.Contains(r.stderr, "needs a validation split") {
		t.Errorf("without val/: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "without-val")); !os.IsNotExist(err) {
		t.Errorf("a refused run made its directory: %v", err)
	}
}

// kiln eval and predict --index read a folder run's test images with the
// run's normalisation (model.json's: the training split's statistics, after
// its validation draw), as predict --image does: they used all of train/'s,
// and eval's loss differed from the run's own test loss.
func TestFolderEvalUsesTheRunsNormalisation(t *testing.T) {
	dir := t.TempDir()
	folder := filepath.Join(dir, "bright")
	rng := rand.New(rand.NewPCG(7, 1))
	for split, n := range map[string]int{"train": 12, "test": 6} {
		for ci, class := range []string{"dark", "light"} {
			if err := os.MkdirAll(filepath.Join(folder, split, class), 0o755); err != nil {
				t.Fatal(err)
			}
			for i := range n {
				// Brightness varies a lot from image to image, so the
				// validation draw moves the training split's mean.
				img, base := image.NewGray(image.Rect(0, 0, 28, 28)), rng.IntN(256)
				for p := range img.Pix {
					v := base + rng.IntN(60) - 30 + (ci*80-40)*(p%28/15)
					img.Pix[p] = uint8(min(max(v, 0), 255))
				}
				var b bytes.Buffer
				if err := png.Encode(&b, img); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(folder, split, class, fmt.Sprintf("%02d.png", i)), b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	run := filepath.Join(dir, "run")
	mustRun(t, dir, "train", "--dataset", "folder", "--data-dir", folder, "--model", "mlp", "--epochs", "3", "--batch", "8",
		"--val-fraction", "0.2", "--run-dir", run, "--no-visuals", "--threads", "1")
	sum := readSummary(t, run)
	m := oneJSONLine(t, mustRun(t, dir, "eval", "--run", run, "--json").stdout)
	if loss := number(t, m, "loss"); math.Abs(loss-*sum.TestLoss) > 1e-9 {
		t.Errorf("eval loss %v, the run's test loss %v", loss, *sum.TestLoss)
	}
	probs := func(args ...string) []classProb {
		var p prediction
		out := mustRun(t, dir, append([]string{"predict", "--run", run, "--json", "--top", "2"}, args...)...).stdout
		if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &p); err != nil {
			t.Fatalf("%v in %q", err, out)
		}
		return p.Top
	}
	byIndex, byFile := probs("--index", "0"), probs("--image", filepath.Join(folder, "test", "dark", "00.png"))
	if !reflect.DeepEqual(byIndex, byFile) {
		t.Errorf("test[0]: %v by --index, %v by --image", byIndex, byFile)
	}
}

// colourFolder writes n 12×12 PNGs a class of one colour each under
// dir/<split>/<class>/: the class's colour from its name, so that a class
// looks alike in every folder.
func colourFolder(t *testing.T, dir string, n int, splits []string, classes ...string) {
	t.Helper()
	for _, split := range splits {
		for _, class := range classes {
			c := color.RGBA{R: class[0] * 2, G: class[1] * 2, B: 255 - class[0], A: 255}
			for i := range n {
				img := image.NewRGBA(image.Rect(0, 0, 12, 12))
				for p := range 144 {
					img.Set(p%12, p/12, color.RGBA{R: c.R ^ uint8(i*p%7), G: c.G, B: c.B, A: 255})
				}
				writePNGFile(t, filepath.Join(dir, split, class, fmt.Sprintf("%02d.png", i)), img)
			}
		}
	}
}

// kiln eval and predict --index of a run on another folder number its
// classes as the run did, by name: a folder of dog and fox evaluated
// against a run of cat, dog and fox scored dog as cat (by position), and a
// class the run never saw is refused, not counted as one it did.
func TestFolderEvalMatchesClassesByName(t *testing.T) {
	dir := t.TempDir()
	trained, fewer, unseen := filepath.Join(dir, "trained"), filepath.Join(dir, "fewer"), filepath.Join(dir, "unseen")
	colourFolder(t, trained, 8, []string{"train", "test"}, "cat", "dog", "fox")
	colourFolder(t, fewer, 4, []string{"train", "test"}, "dog", "fox")
	colourFolder(t, unseen, 4, []string{"train", "test"}, "dog", "zebra")
	run := filepath.Join(dir, "run")
	mustRun(t, dir, "train", "--dataset", "folder", "--data-dir", trained, "--model", "mlp", "--epochs", "1", "--batch", "8",
		"--image-size", "12", "--run-dir", run, "--no-visuals", "--threads", "1")
	var out struct {
		Confusion [][]int `json:"confusion"`
		Count     int     `json:"count"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, dir, "eval", "--run", run, "--data-dir", fewer, "--json").stdout), &out); err != nil {
		t.Fatal(err)
	}
	rowSum := func(r []int) (s int) {
		for _, v := range r {
			s += v
		}
		return s
	}
	if len(out.Confusion) != 3 || rowSum(out.Confusion[0]) != 0 || rowSum(out.Confusion[1]) != 4 || rowSum(out.Confusion[2]) != 4 {
		t.Errorf("eval of dog and fox against a cat/dog/fox run: confusion %v, want rows 1 and 2 (dog, fox) of 4 each", out.Confusion)
	}
	var p prediction
	if err := json.Unmarshal([]byte(strings.TrimSpace(mustRun(t, dir, "predict", "--run", run, "--data-dir", fewer, "--index", "0", "--json").stdout)), &p); err != nil {
		t.Fatal(err)
	}
	if p.LabelName != "dog" || p.Label == nil || *p.Label != 1 {
		t.Errorf("predict --index 0 of the dog/fox folder: true class %q (%v), want dog (1)", p.LabelName, p.Label)
	}
	for _, args := range [][]string{{"eval", "--run", run, "--data-dir", unseen}, {"predict", "--run", run, "--data-dir", unseen, "--index", "0"}} {
		if r := kiln(t, dir, args...); r.code == 0 || !strings.Contains(r.stderr, `class "zebra"`) {
			t.Errorf("%s with a class the run never saw: exit %d\n%s", args[0], r.code, r.stderr)
		}
	}
}
