package data

import (
	"bytes"
	"compress/zlib"
	"crypto/sha256"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/engine"
)

// greyPNG is a w×h grey PNG whose pixels are v, v+1, … (mod 256).
func greyPNG(t testing.TB, w, h int, v byte) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = v + byte(i)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// rgbPNG is a w×h opaque RGB PNG of one colour.
func rgbPNG(t testing.TB, w, h int, c color.RGBA) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, 255
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pngClaiming is a real 1×1 PNG whose header claims w×h.
func pngClaiming(t testing.TB, w, h uint32) []byte {
	b := greyPNG(t, 1, 1, 0)
	ihdr := b[12 : 12+4+13]
	binary.BigEndian.PutUint32(ihdr[4:], w)
	binary.BigEndian.PutUint32(ihdr[8:], h)
	binary.BigEndian.PutUint32(b[12+4+13:], crc32.ChecksumIEEE(ihdr))
	return b
}

// writeFiles writes name → contents under dir, making folders.
func writeFiles(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// smallFolder is a grey two-class set: train/ with 3 cats and 3 dogs (one a
// JPEG), test/ with one of each.
func smallFolder(t testing.TB) string {
	dir := t.TempDir()
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, image.NewGray(image.Rect(0, 0, 28, 28)), &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, map[string][]byte{
		"train/cat/a.png": greyPNG(t, 28, 28, 0), "train/cat/b.png": greyPNG(t, 28, 28, 10), "train/cat/c.PNG": greyPNG(t, 56, 28, 20),
		"train/dog/a.png": greyPNG(t, 28, 28, 100), "train/dog/b.png": greyPNG(t, 14, 14, 110), "train/dog/c.jpg": jb.Bytes(),
		"test/cat/x.png": greyPNG(t, 28, 28, 5), "test/dog/y.png": greyPNG(t, 28, 28, 105),
		"train/dog/notes.txt": []byte("not an image"),
	})
	return dir
}

// loadNotes loads the folder set at dir and returns what it said.
func loadNotes(t testing.TB, dir string, o Options) (*Splits, []string, error) {
	t.Helper()
	var notes []string
	o.Dir = dir
	o.Folder.Note = func(m string) { notes = append(notes, m) }
	if o.Folder.CacheDir == "" {
		o.Folder.CacheDir = filepath.Join(dir, "..", "usercache")
	}
	s, err := Load("folder", o)
	return s, notes, err
}

func TestFolderLoadsClassesShapesAndNormalisation(t *testing.T) {
	dir := smallFolder(t)
	s, notes, err := loadNotes(t, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tr := s.Train
	if strings.Join(tr.Classes, ",") != "cat,dog" || tr.Len() != 6 || s.Test.Len() != 2 || s.Val != nil {
		t.Fatalf("classes %v, train %d, test %d, val %v", tr.Classes, tr.Len(), s.Test.Len(), s.Val)
	}
	if tr.Channels != 1 || tr.Height != 28 || tr.Width != 28 {
		t.Fatalf("shape %d×%d×%d, want 1×28×28 for a grey set", tr.Channels, tr.Height, tr.Width)
	}
	if want := []int32{0, 0, 0, 1, 1, 1}; !equalInts(tr.Labels, want) {
		t.Errorf("labels %v, want %v", tr.Labels, want)
	}
	if err := tr.Validate(); err != nil {
		t.Fatal(err)
	}
	// The stored values are normalised with the training split's own
	// figures: their mean is 0 and their spread 1.
	var sum, sq float64
	for _, v := range tr.Images {
		sum += float64(v)
		sq += float64(v) * float64(v)
	}
	n := float64(len(tr.Images))
	if m, sd := sum/n, math.Sqrt(sq/n-(sum/n)*(sum/n)); math.Abs(m) > 1e-4 || math.Abs(sd-1) > 1e-4 {
		t.Errorf("normalised training values have mean %v, std %v", m, sd)
	}
	if s.Test.Mean[0] != tr.Mean[0] || tr.Mean[0] <= 0 || tr.Std[0] <= 0 {
		t.Errorf("test mean %v, train mean %v std %v", s.Test.Mean, tr.Mean, tr.Std)
	}
	// Pixel 3 of train/cat/a.png is 3: stored as NormalizeImage stores it.
	want := byteTable(tr.Mean[0], tr.Std[0])[3]
	if got := tr.Image(0)[3]; got != want {
		t.Errorf("pixel 3 is %v, want %v", got, want)
	}
	if !anyContains(notes, "1 file is not an image") || !anyContains(notes, "notes.txt") {
		t.Errorf("no note of the text file left out: %q", notes)
	}
}

func equalInts(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func anyContains(notes []string, s string) bool {
	for _, n := range notes {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

func TestFolderValFolderAndMissingTest(t *testing.T) {
	dir := smallFolder(t)
	if err := os.Rename(filepath.Join(dir, "test"), filepath.Join(dir, "val")); err != nil {
		t.Fatal(err)
	}
	s, notes, err := loadNotes(t, dir, Options{ValFraction: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	if s.Test != nil || s.Val == nil || s.Val.Len() != 2 || s.Train.Len() != 6 {
		t.Fatalf("test %v, val %v, train %d: want val/ as the validation split and no test", s.Test, s.Val, s.Train.Len())
	}
	if !anyContains(notes, "no test/ folder") || !anyContains(notes, "--val-fraction 0.1 is not used") {
		t.Errorf("notes %q do not say that val/ replaces --val-fraction and that there is no test", notes)
	}
	// A val/ whose every image is bad: the error names the split and the
	// first bad file, not the settings that select samples.
	writeFiles(t, dir, map[string][]byte{"val/cat/x.png": []byte("text"), "val/dog/y.png": []byte("text")})
	if _, _, err := loadNotes(t, dir, Options{}); err == nil || !strings.Contains(err.Error(), "the validation split (val/) has no image left: 2 bad files") ||
		!strings.Contains(err.Error(), "x.png") {
		t.Errorf("every val/ image bad: %v", err)
	}
	// valid/ (Roboflow's exports) and validation/ are val/ too; it was left
	// out without a word. Two of them are refused.
	os.RemoveAll(filepath.Join(dir, "val"))
	writeFiles(t, dir, map[string][]byte{"valid/cat/a.png": greyPNG(t, 28, 28, 9), "valid/dog/b.png": greyPNG(t, 28, 28, 200)})
	s, notes, err = loadNotes(t, dir, Options{ValFraction: 0.1})
	if err != nil || s.Val == nil || s.Val.Len() != 2 || s.Train.Len() != 6 || !anyContains(notes, "has a valid/ folder") {
		t.Fatalf("valid/: %v, val %v, notes %q", err, s, notes)
	}
	writeFiles(t, dir, map[string][]byte{"validation/cat/a.png": greyPNG(t, 28, 28, 9)})
	if _, _, err := loadNotes(t, dir, Options{}); err == nil || !strings.Contains(err.Error(), "valid/ and validation/ are both validation folders") {
		t.Errorf("valid/ and validation/: %v", err)
	}
	os.RemoveAll(filepath.Join(dir, "valid"))
	os.RemoveAll(filepath.Join(dir, "validation"))
	s, _, err = loadNotes(t, dir, Options{ValFraction: 0.5, Seed: 3})
	if err != nil || s.Val == nil || s.Val.Len() != 3 || s.Train.Len() != 3 {
		t.Fatalf("without val/, --val-fraction 0.5 of 6: %v %v", s, err)
	}
}

func TestFolderImageSizeFitAndRGB(t *testing.T) {
	dir := t.TempDir()
	red, blue := color.RGBA{200, 10, 10, 255}, color.RGBA{10, 10, 200, 255}
	writeFiles(t, dir, map[string][]byte{
		"train/red/1.png": rgbPNG(t, 40, 20, red), "train/red/2.png": rgbPNG(t, 20, 20, red),
		"train/blue/1.png": rgbPNG(t, 20, 40, blue), "train/blue/2.png": rgbPNG(t, 30, 30, blue),
		"train/blue/3.png": greyPNG(t, 30, 30, 7),
	})
	s, notes, err := loadNotes(t, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if tr := s.Train; tr.Channels != 3 || tr.Height != 32 || tr.Width != 32 {
		t.Fatalf("shape %d×%d×%d, want 3×32×32 for an RGB set", tr.Channels, tr.Height, tr.Width)
	}
	if !anyContains(notes, "1 images are grey") || !anyContains(notes, "3.png") {
		t.Errorf("no note of the grey image converted to RGB: %q", notes)
	}
	s, _, err = loadNotes(t, dir, Options{Folder: FolderOptions{Size: "10x16", Fit: "pad"}})
	if err != nil {
		t.Fatal(err)
	}
	tr := s.Train
	if tr.Height != 10 || tr.Width != 16 {
		t.Fatalf("size %dx%d, want 10x16", tr.Height, tr.Width)
	}
	// blue/1.png is 20×40 (tall): padded, its first column is black.
	black := byteTable(tr.Mean[2], tr.Std[2])[0]
	if got := tr.Image(0)[2*160]; got != black {
		t.Errorf("padded corner %v, want black %v", got, black)
	}
	if _, _, err := loadNotes(t, dir, Options{Folder: FolderOptions{Fit: "stretch"}}); err == nil || !strings.Contains(err.Error(), "crop or pad") {
		t.Errorf("fit stretch: %v", err)
	}
}

// TestFolderPadSkipsImagesTooNarrow: padded to fit inside the output, an
// image of more than twice the output's aspect ratio would have a side of 0
// pixels (Pillow refuses it): such a file is skipped and named as a bad one,
// or stops a strict load; crop takes it; predict's conversion refuses it.
func TestFolderPadSkipsImagesTooNarrow(t *testing.T) {
	dir := smallFolder(t)
	writeFiles(t, dir, map[string][]byte{"train/cat/banner.png": greyPNG(t, 600, 10, 0), "train/dog/pole.png": greyPNG(t, 1, 57, 0)})
	s, _, err := loadNotes(t, dir, Options{Folder: FolderOptions{Fit: "pad"}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Train.Len() != 6 || s.Skipped == nil || s.Skipped.Count != 2 {
		t.Fatalf("train %d, skipped %+v: want the 6 good images and 2 too narrow to pad", s.Train.Len(), s.Skipped)
	}
	if all := strings.Join(s.Skipped.First, "\n"); !strings.Contains(all, "banner.png: a 600×10 image padded to 28×28 would be 28×0 pixels") ||
		!strings.Contains(all, "pole.png: a 1×57 image padded to 28×28 would be 0×28") {
		t.Errorf("skipped files: %s", all)
	}
	if _, _, err := loadNotes(t, dir, Options{Folder: FolderOptions{Fit: "pad", Strict: true}}); err == nil || !strings.Contains(err.Error(), "too narrow") {
		t.Errorf("strict pad: %v, want the narrow image's error", err)
	}
	if s, _, err = loadNotes(t, dir, Options{}); err != nil || s.Train.Len() != 8 {
		t.Errorf("crop: %v, %d images, want all 8", err, s.Train.Len())
	}
	banner := image.NewGray(image.Rect(0, 0, 600, 10))
	if _, err := ImagePixels(banner, 1, 28, 28, true); err == nil || !strings.Contains(err.Error(), "too narrow") {
		t.Errorf("ImagePixels pad: %v", err)
	}
	if px, err := ImagePixels(banner, 1, 28, 28, false); err != nil || len(px) != 28*28 {
		t.Errorf("ImagePixels crop: %d bytes, %v", len(px), err)
	}
}

// TestFolderWithoutTrainFolder: DIR/<class>/<image>, as torchvision's
// ImageFolder and Keras read it, is the training split, --val-fraction of it
// held out; a note says so. A class folder named like a split is not.
func TestFolderWithoutTrainFolder(t *testing.T) {
	dir := smallFolder(t)
	os.RemoveAll(filepath.Join(dir, "test"))
	for _, c := range []string{"cat", "dog"} {
		if err := os.Rename(filepath.Join(dir, "train", c), filepath.Join(dir, c)); err != nil {
			t.Fatal(err)
		}
	}
	os.Remove(filepath.Join(dir, "train"))
	s, notes, err := loadNotes(t, dir, Options{ValFraction: 0.5, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.Train.Classes, ",") != "cat,dog" || s.Train.Len() != 3 || s.Val.Len() != 3 || s.Test != nil {
		t.Fatalf("classes %v, train %d, val %v, test %v: want cat,dog with 6 images split 3/3", s.Train.Classes, s.Train.Len(), s.Val, s.Test)
	}
	if s.Train.Source != dir {
		t.Errorf("training images from %q, want %q", s.Train.Source, dir)
	}
	if !anyContains(notes, "its 2 class folders (cat, dog) are the training images") {
		t.Errorf("no note that DIR's class folders are the training set: %q", notes)
	}
	// With a test/ beside them, the class folders are not read as training data.
	writeFiles(t, dir, map[string][]byte{"test/cat/x.png": greyPNG(t, 28, 28, 5)})
	if _, _, err := loadNotes(t, dir, Options{}); err == nil || !strings.Contains(err.Error(), "no train/ folder beside test/") {
		t.Errorf("test/ without train/: %v", err)
	}
	// A class folder named valid/ (a split's name since valid/ is val/)
	// is said to be the cause.
	os.RemoveAll(filepath.Join(dir, "test"))
	writeFiles(t, dir, map[string][]byte{"valid/x.png": greyPNG(t, 28, 28, 5)})
	if _, _, err := loadNotes(t, dir, Options{}); err == nil || !strings.Contains(err.Error(), "no train/ folder beside valid/") ||
		!strings.Contains(err.Error(), "cannot have those names") {
		t.Errorf("a class folder named valid/: %v", err)
	}
}

// TestFolderRefusesBadLayouts: each mistake in the folders is an error that
// names the folder at fault.
func TestFolderRefusesBadLayouts(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		make       func(dir string)
	}{
		{"no train", "no train/ folder beside test/", func(dir string) { os.RemoveAll(filepath.Join(dir, "train")) }},
		{"images without class folders", ": no class folders", func(dir string) {
			os.RemoveAll(filepath.Join(dir, "train"))
			os.RemoveAll(filepath.Join(dir, "test"))
			writeFiles(t, dir, map[string][]byte{"a.png": greyPNG(t, 4, 4, 0)})
		}},
		{"no class folders", "train: no class folders", func(dir string) {
			os.RemoveAll(filepath.Join(dir, "train"))
			writeFiles(t, dir, map[string][]byte{"train/a.png": greyPNG(t, 4, 4, 0)})
		}},
		{"empty class", "train/emu: an empty class folder", func(dir string) { os.MkdirAll(filepath.Join(dir, "train", "emu"), 0o755) }},
		{"class only in test", `test/cow: class "cow" is not among train/'s classes`, func(dir string) {
			writeFiles(t, dir, map[string][]byte{"test/cow/1.png": greyPNG(t, 4, 4, 0)})
		}},
		{"symlink loop", "train/cat/up: a symlink loop", func(dir string) {
			os.Symlink("..", filepath.Join(dir, "train", "cat", "up"))
		}},
		{"not a directory", "not a directory", func(dir string) {
			os.RemoveAll(dir)
			os.WriteFile(dir, nil, 0o644)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := smallFolder(t)
			tc.make(dir)
			_, _, err := loadNotes(t, dir, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	if _, err := Load("folder", Options{}); err == nil || !strings.Contains(err.Error(), "--data-dir DIR is required") {
		t.Errorf("no directory: %v", err)
	}
}

// badFiles are one of each kind of bad image file, by name.
func badFiles(t testing.TB) map[string][]byte {
	good := greyPNG(t, 28, 28, 0)
	return map[string][]byte{
		"train/cat/garbage.png":   []byte("this is not a picture at all"),
		"train/cat/truncated.png": good[:len(good)/2],
		"train/cat/cut-head.png":  good[:20],
		"train/cat/empty.png":     nil,
		"train/cat/zero.png":      pngClaiming(t, 0, 28),
		"train/dog/huge.png":      pngClaiming(t, 100000, 100000),
	}
}

func TestFolderSkipsBadFilesOrStopsWhenStrict(t *testing.T) {
	dir := smallFolder(t)
	writeFiles(t, dir, badFiles(t))
	if err := os.Symlink("self.png", filepath.Join(dir, "train", "dog", "self.png")); err != nil {
		t.Fatal(err)
	}
	s, notes, err := loadNotes(t, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Train.Len() != 6 || s.Skipped == nil || s.Skipped.Count != 7 {
		t.Fatalf("train %d, skipped %+v: want the 6 good images kept and 7 bad files counted", s.Train.Len(), s.Skipped)
	}
	all := strings.Join(s.Skipped.First, "\n")
	for _, want := range []string{
		"garbage.png: not a PNG, JPEG, GIF, BMP or WebP image",
		"truncated.png: a png image that does not decode",
		"cut-head.png: a png image whose header does not read",
		"empty.png: an empty file",
		"zero.png: ",
		"huge.png: png header says 100000×100000 pixels: larger than",
		"self.png: too many levels of symbolic links",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("skipped files do not say %q:\n%s", want, all)
		}
	}
	if !anyContains(notes, "7 bad image files were skipped") || !anyContains(notes, "garbage.png") {
		t.Errorf("notes %q do not name the skipped files", notes)
	}
	// Strict stops, from the cache the load above wrote and without it.
	for range 2 {
		_, _, err = loadNotes(t, dir, Options{Folder: FolderOptions{Strict: true}})
		if err == nil || !strings.Contains(err.Error(), "self.png") || !strings.Contains(err.Error(), "6 more bad files") {
			t.Fatalf("strict: %v, want an error naming the first bad file", err)
		}
		os.Remove(filepath.Join(dir, ".kiln-cache-auto-crop"))
	}
}

// TestFolderCacheDamaged: a cache whose bytes changed, in a class name, in
// the pixels or cut short, is said to be damaged and decoded again, never
// trained on; the images are those of an undamaged load. A temporary cache
// file a killed writer left is removed once stale, a fresh one (another
// process writing) kept.
func TestFolderCacheDamaged(t *testing.T) {
	dir := smallFolder(t)
	want, _, err := loadNotes(t, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, ".kiln-cache-auto-crop")
	good, err := os.ReadFile(cache)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(good, []byte("\x03cat"))
	if i < 0 {
		t.Fatal("no class name in the cache")
	}
	for name, damage := range map[string]func([]byte) []byte{
		"class name": func(b []byte) []byte { copy(b[i+1:], "cow"); return b },
		"pixel":      func(b []byte) []byte { b[len(b)-sha256.Size-100] ^= 1; return b },
		"checksum":   func(b []byte) []byte { b[len(b)-1] ^= 0x80; return b },
		"cut short":  func(b []byte) []byte { return b[:len(b)-1] },
	} {
		if err := os.WriteFile(cache, damage(bytes.Clone(good)), 0o644); err != nil {
			t.Fatal(err)
		}
		s, notes, err := loadNotes(t, dir, Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if anyContains(notes, "read from the cache") || !anyContains(notes, "is damaged") {
			t.Errorf("%s: notes %q, want the damage said and the images decoded again", name, notes)
		}
		if !slices.Equal(s.Train.Classes, want.Train.Classes) || !equalFloats(s.Train.Images, want.Train.Images) {
			t.Errorf("%s: classes %q, want %q, or other pixels", name, s.Train.Classes, want.Train.Classes)
		}
	}
	stale, fresh := filepath.Join(dir, "..kiln-cache-auto-crop.tmp123"), filepath.Join(dir, "..kiln-cache-auto-crop.tmp456")
	writeFiles(t, dir, map[string][]byte{filepath.Base(stale): good, filepath.Base(fresh): good})
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	os.Remove(cache)
	if _, _, err := loadNotes(t, dir, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the stale temporary cache is still there: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a fresh temporary cache (another writer's) was removed: %v", err)
	}
}

// TestFolderCache: the second load reads the cache; touching, rewriting or
// adding a file decodes again; a cache that cannot go beside the data goes
// to the user's cache directory.
func TestFolderCache(t *testing.T) {
	dir := smallFolder(t)
	load := func() (*Splits, []string) {
		t.Helper()
		s, notes, err := loadNotes(t, dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s, notes
	}
	first, notes := load()
	if !anyContains(notes, "cached in "+filepath.Join(dir, ".kiln-cache-auto-crop")) {
		t.Fatalf("first load: %q", notes)
	}
	second, notes := load()
	if !anyContains(notes, "read from the cache") || !equalFloats(first.Train.Images, second.Train.Images) || !anyContains(notes, "not an image") {
		t.Fatalf("second load did not read the same images from the cache: %q", notes)
	}
	// A temporary cache file a killed writer left is removed by a run that
	// reads the cache once it is stale (it stayed for good: only a run that
	// wrote a cache looked); a fresh one may be another writer's, and stays.
	stale, fresh := filepath.Join(dir, "..kiln-cache-auto-crop.tmp123"), filepath.Join(dir, "..kiln-cache-auto-crop.tmp456")
	writeFiles(t, dir, map[string][]byte{filepath.Base(stale): []byte("half"), filepath.Base(fresh): []byte("half")})
	long := time.Now().Add(-2 * staleCacheTemp)
	os.Chtimes(stale, long, long)
	if _, notes := load(); !anyContains(notes, "read from the cache") {
		t.Fatalf("third load: %q", notes)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Errorf("a stale temporary cache file stayed after a load from the cache")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("a fresh temporary cache file (another writer's?) was removed: %v", err)
	}
	os.Remove(fresh)
	a := filepath.Join(dir, "train", "cat", "a.png")
	later := time.Now().Add(time.Hour)
	for _, change := range []func(){
		func() { os.Chtimes(a, later, later) },
		func() { os.WriteFile(a, greyPNG(t, 28, 28, 99), 0o644) },
		func() { writeFiles(t, dir, map[string][]byte{"train/cat/new.png": greyPNG(t, 28, 28, 1)}) },
	} {
		change()
		if _, notes := load(); anyContains(notes, "read from the cache") {
			t.Fatalf("a changed folder was read from the cache: %q", notes)
		}
		if _, notes := load(); !anyContains(notes, "read from the cache") {
			t.Fatalf("the re-decoded folder was not cached: %q", notes)
		}
	}
	if s, notes := load(); s.Train.Len() != 7 || s.Train.Image(0)[0] == first.Train.Image(0)[0] {
		t.Fatalf("the cache kept the old images: %d, notes %q", s.Train.Len(), notes)
	}
	// A directory where the cache file would go: it cannot be written there.
	os.Remove(filepath.Join(dir, ".kiln-cache-16x16-crop"))
	os.Mkdir(filepath.Join(dir, ".kiln-cache-16x16-crop"), 0o755)
	o := Options{Folder: FolderOptions{Size: "16x16"}}
	if _, notes, err := loadNotes(t, dir, o); err != nil || !anyContains(notes, "cached in "+filepath.Join(dir, "..", "usercache")) {
		t.Fatalf("read-only beside the data: %v %q", err, notes)
	}
	if _, notes, err := loadNotes(t, dir, o); err != nil || !anyContains(notes, "read from the cache "+filepath.Join(dir, "..", "usercache")) {
		t.Fatalf("second load from the user cache: %v %q", err, notes)
	}
}

func equalFloats(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestFolderFormatsDecodeAlike: the same pictures saved by Pillow as PNG,
// lossless WebP, BMP and GIF decode to the same planes.
func TestFolderFormatsDecodeAlike(t *testing.T) {
	dir := filepath.Join("testdata", "pilresize")
	for _, tc := range []struct {
		name string
		c    int
		exts []string
	}{
		{"l-13x57", 1, []string{".webp", ".bmp", ".gif"}},
		{"rgb-13x57", 3, []string{".webp", ".bmp"}},
	} {
		want, h, w, err := decodeFile(filepath.Join(dir, tc.name+".png"), tc.c)
		if err != nil {
			t.Fatal(err)
		}
		for _, ext := range tc.exts {
			p := filepath.Join(dir, tc.name+ext)
			if _, err := readHeader(p); err != nil {
				t.Errorf("%s: header: %v", p, err)
			}
			got, gh, gw, err := decodeFile(p, tc.c)
			if err != nil || gh != h || gw != w {
				t.Fatalf("%s: %d×%d, %v; want %d×%d", p, gw, gh, err, w, h)
			}
			for c := range want {
				if i := firstDiff(got[c], want[c]); i >= 0 {
					t.Errorf("%s channel %d: pixel %d is %d, the PNG's %d", p, c, i, got[c][i], want[c][i])
				}
			}
		}
	}
}

// toByte must give back every byte the folder set stored as b/255, or the
// normalisation would move pixels to their neighbours' values.
func TestToByteRecoversEveryByte(t *testing.T) {
	lut := byteTable(0, 1)
	for b := range 256 {
		if got := toByte(lut[b]); got != byte(b) {
			t.Fatalf("toByte(%v) = %d, want %d", lut[b], got, b)
		}
	}
}

// A grey PNG with alpha (Pillow's "LA") counts as grey: a set of them is a
// one-channel set, its pixels the grey values.
func TestFolderGreyAlphaPNGIsGrey(t *testing.T) {
	la := func(v byte) []byte { return greyAlphaPNG(t, 28, 28, v) }
	dir := t.TempDir()
	writeFiles(t, dir, map[string][]byte{"train/a/1.png": la(40), "train/a/2.png": la(50), "train/b/1.png": la(200), "train/b/2.png": la(210)})
	s, _, err := loadNotes(t, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Train.Channels != 1 {
		t.Fatalf("a set of grey+alpha PNGs has %d channels, want 1", s.Train.Channels)
	}
}

// greyAlphaPNG is a w×h PNG of colour type 4 (grey and alpha, Pillow's "LA",
// which Go's encoder does not write): grey v, alpha 128.
func greyAlphaPNG(t testing.TB, w, h int, v byte) []byte {
	chunk := func(b *bytes.Buffer, kind string, data []byte) {
		binary.Write(b, binary.BigEndian, uint32(len(data)))
		b.WriteString(kind)
		b.Write(data)
		binary.Write(b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte(kind), data...)))
	}
	var rows bytes.Buffer
	z := zlib.NewWriter(&rows)
	for range h {
		z.Write([]byte{0}) // filter: none
		for range w {
			z.Write([]byte{v, 128})
		}
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, uint32(w)), uint32(h))
	chunk(&b, "IHDR", append(ihdr, 8, 4, 0, 0, 0))
	chunk(&b, "IDAT", rows.Bytes())
	chunk(&b, "IEND", nil)
	return b.Bytes()
}

// A 16-bit PNG with alpha reads as Pillow reads it: each colour's high
// byte, the alpha dropped. Premultiplying made transparent pixels black.
func TestFolder16BitAlphaPNGKeepsItsColours(t *testing.T) {
	img := image.NewNRGBA64(image.Rect(0, 0, 2, 1))
	img.SetNRGBA64(0, 0, color.NRGBA64{R: 0xffff, G: 0xffff, B: 0xffff, A: 0})      // transparent white
	img.SetNRGBA64(1, 0, color.NRGBA64{R: 0x12ff, G: 0x8000, B: 0xfe01, A: 0x0100}) // nearly transparent
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "a.png")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	planes, _, _, err := decodeFile(p, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]byte{{0xff, 0x12}, {0xff, 0x80}, {0xff, 0xfe}}
	if !reflect.DeepEqual(planes, want) {
		t.Errorf("planes %v, want %v", planes, want)
	}
}

// A file Pillow reads but Go's decoders do not (an arithmetic-coded JPEG,
// an animated WebP) is named as such, not as truncated or corrupt.
func TestFolderNamesFormatsNotReadAsSuch(t *testing.T) {
	for file, want := range map[string]string{
		"arith.jpg": "a JPEG with a feature this decoder does not read",
		"anim.webp": "an animated WebP, which this decoder does not read",
	} {
		p := filepath.Join("testdata", "unsupported", file)
		_, errH := readHeader(p)
		_, _, _, errD := decodeFile(p, 3)
		for _, err := range []error{errH, errD} {
			if err != nil && (!strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "corrupt")) {
				t.Errorf("%s: %v, want %q", file, err, want)
			}
		}
		if errH == nil && errD == nil {
			t.Errorf("%s: read, want %q (testdata/unsupported/make.sh makes files Go cannot read)", file, want)
		}
	}
}

// An older Kiln's cache (the gob alone, before the checksum) is decoded
// again without being called damaged: nothing is wrong with the disk.
func TestFolderCacheOfAnOlderKiln(t *testing.T) {
	dir := smallFolder(t)
	if _, _, err := loadNotes(t, dir, Options{}); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, ".kiln-cache-auto-crop")
	b, err := os.ReadFile(cache)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cache, b[:len(b)-sha256.Size], 0o644); err != nil {
		t.Fatal(err)
	}
	_, notes, err := loadNotes(t, dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if anyContains(notes, "is damaged") || anyContains(notes, "read from the cache") || !anyContains(notes, "cached in") {
		t.Errorf("notes %q, want the images decoded again and cached, no damage said", notes)
	}
}

// A class folder whose name is not UTF-8 is refused, named: model.json kept
// such names as U+FFFD, so two of them became one class name.
func TestFolderClassNotUTF8(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string][]byte{"x\xe9/a.png": greyPNG(t, 28, 28, 9), "x\xef/b.png": greyPNG(t, 28, 28, 200)})
	if _, _, err := loadNotes(t, dir, Options{}); err == nil || !strings.Contains(err.Error(), "not UTF-8") {
		t.Fatalf("class folders of non-UTF-8 names: %v", err)
	}
}

// A folder's images decode on --threads threads (the engine's), not on
// every core whatever --threads said.
func TestFolderDecodesOnTheEngineThreads(t *testing.T) {
	was := engine.Threads()
	defer engine.SetThreads(was)
	engine.SetThreads(1)
	var running, most atomic.Int32
	parallel(64, "decoding", func(int) {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(100 * time.Microsecond)
		running.Add(-1)
	})
	if most.Load() != 1 {
		t.Fatalf("at one thread, %d decodes ran at once", most.Load())
	}
}
