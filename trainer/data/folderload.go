package data

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
)

// folderImages is a folder set decoded: each split's labels and its images'
// bytes (C×H×W each, resized), what the cache file holds.
type folderImages struct {
	Version                 int
	Key                     [32]byte
	Classes                 []string
	Channels, Height, Width int
	Present                 [3]bool
	Labels                  [3][]int32
	Pixels                  [3][]byte
	Skipped                 Skipped
	Notes                   []string // what decoding found, said again on every load
}

// folderCacheVersion changes when folderImages or the decoding changes, so
// that an old cache is decoded again instead of misread.
const folderCacheVersion = 2 // 2: a SHA-256 after the gob; JPEG and WebP colour as Pillow decodes it

// loadFolder reads the folder set at o.Dir, from its cache when the files
// are as they were.
func loadFolder(o Options) (*folderImages, error) {
	f := o.Folder
	if err := f.check(); err != nil {
		return nil, err
	}
	l, err := listFolder(o.Dir)
	if err != nil {
		return nil, err
	}
	key := l.key(f)
	img, where, damaged := readFolderCache(l, f, key)
	for _, p := range damaged {
		f.note("the cache %s is damaged (its checksum does not match): decoding the images again", p)
	}
	if img != nil {
		if f.Strict && img.Skipped.Count > 0 {
			return nil, fmt.Errorf("data: %s (and %d more bad files; without --strict they are skipped)", img.Skipped.First[0], img.Skipped.Count-1)
		}
		f.note("decoded images read from the cache %s", where)
		return img, nil
	}
	img, err = decodeListing(l, f)
	if err != nil {
		return nil, err
	}
	img.Key = key
	if where, err := writeFolderCache(l.dir, f, img); err != nil {
		f.note("the decoded images could not be cached, so the next run decodes them again: %v", err)
	} else {
		f.note("decoded images cached in %s", where)
	}
	return img, nil
}

// decodeListing decodes every file of l over all cores: headers first
// (their channels decide the set's, and huge or empty images are refused
// before decoding), then the pixels, resized.
func decodeListing(l *folderListing, f FolderOptions) (*folderImages, error) {
	n := len(l.files)
	headers, errs := make([]imageHeader, n), make([]error, n)
	parallel(n, "reading image headers", func(i int) { headers[i], errs[i] = readHeader(l.files[i].path) })
	img := &folderImages{Version: folderCacheVersion, Classes: l.classes, Present: l.present, Channels: 3}
	grey, total := 0, 0
	for i, fl := range l.files {
		if errs[i] == nil && fl.split == 0 {
			total++
			grey += btoi(headers[i].grey)
		}
	}
	if 2*grey > total {
		img.Channels = 1
	}
	h, w, _ := f.size()
	if h == 0 {
		h, w = 32, 32
		if img.Channels == 1 {
			h, w = 28, 28
		}
	}
	img.Height, img.Width = h, w
	img.noteConversions(l, headers, errs)
	s := img.Channels * h * w
	pix := make([]byte, n*s)
	parallel(n, "decoding images", func(i int) {
		if errs[i] != nil {
			return
		}
		planes, sh, sw, err := decodeFile(l.files[i].path, img.Channels)
		if err == nil {
			err = checkFit(sh, sw, h, w, f.Fit == "pad")
		}
		if err != nil {
			errs[i] = err
			return
		}
		for c, p := range planes {
			copy(pix[i*s+c*h*w:], fitPlane(p, sh, sw, h, w, f.Fit == "pad"))
		}
	})
	if err := img.collect(l, f, pix, errs); err != nil {
		return nil, err
	}
	return img, nil
}

// noteConversions records a note for the images whose channels differ from
// the set's, which decoding converts.
func (img *folderImages) noteConversions(l *folderListing, headers []imageHeader, errs []error) {
	other, first := 0, ""
	for i, fl := range l.files {
		if errs[i] == nil && headers[i].grey != (img.Channels == 1) {
			if other++; other == 1 {
				first = fl.rel
			}
		}
	}
	if other == 0 {
		return
	}
	kind, to := "RGB", "grey (Pillow's convert(\"L\") luma)"
	if img.Channels == 3 {
		kind, to = "grey", "RGB (the grey value in each channel)"
	}
	img.Notes = append(img.Notes, fmt.Sprintf("%d images are %s where most of train/'s are not: converted to %s (the first: %s)", other, kind, to, first))
}

// collect keeps the good images of each split, in order, and counts the
// bad ones, or stops at the first with Strict.
func (img *folderImages) collect(l *folderListing, f FolderOptions, pix []byte, errs []error) error {
	bad := append([]string(nil), l.broken...)
	s := img.Channels * img.Height * img.Width
	kept := 0
	perClass := make([]int, len(l.classes))
	for i, fl := range l.files {
		if errs[i] != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", fl.path, errs[i]))
			continue
		}
		copy(pix[kept*s:(kept+1)*s], pix[i*s:(i+1)*s])
		kept++
		img.Labels[fl.split] = append(img.Labels[fl.split], int32(fl.class))
		if fl.split == 0 {
			perClass[fl.class]++
		}
	}
	if len(bad) > 0 && f.Strict {
		return fmt.Errorf("data: %s (and %d more bad files; without --strict they are skipped)", bad[0], len(bad)-1)
	}
	img.Skipped.Count = len(bad)
	img.Skipped.First = bad[:min(len(bad), maxSkippedNames)]
	for k, c := range perClass {
		if c == 0 {
			return fileErr(filepath.Join(folderTrainDir(l.dir), l.classes[k]), "no image in this class folder could be read (%d skipped in all; the first: %s)", len(bad), bad[0])
		}
	}
	at := 0
	for sp := range img.Pixels {
		n := len(img.Labels[sp]) * s
		img.Pixels[sp] = pix[at : at+n : at+n]
		at += n
	}
	if len(l.ignored) > 0 {
		img.Notes = append(img.Notes, fmt.Sprintf("%s (%s) and left out (the first: %s)", filesWord(len(l.ignored), "file is not an image", "files are not images"), strings.Join(imageExts, ", ")+"; TIFF is not read: convert it to PNG", l.ignored[0]))
	}
	return nil
}

// folderSplitDir is the folder that split sp of the set at dir comes from.
func folderSplitDir(dir string, sp int) string {
	if sp == 0 {
		return folderTrainDir(dir)
	}
	return folderSplitPath(dir, sp)
}

// datasets makes the decoded splits into data sets of values in [0, 1]
// (Mean 0, Std 1): Load normalises them with the training split's figures
// once it has taken the validation split out.
func (img *folderImages) datasets(dir string) [3]*Dataset {
	var out [3]*Dataset
	lut := byteTable(0, 1)
	for sp, present := range img.Present {
		if !present {
			continue
		}
		d := &Dataset{Name: "folder", Source: folderSplitDir(dir, sp), Task: Classification,
			Classes: append([]string(nil), img.Classes...), Channels: img.Channels, Height: img.Height, Width: img.Width,
			Mean: make([]float64, img.Channels), Std: make([]float64, img.Channels), Labels: img.Labels[sp]}
		for c := range d.Std {
			d.Std[c] = 1
		}
		d.Images = make([]float32, len(img.Pixels[sp]))
		for i, b := range img.Pixels[sp] {
			d.Images[i] = lut[b]
		}
		out[sp] = d
	}
	return out
}

// noteFolder says what a run on the folder set should know: the bad files
// left out, what decoding converted, and which split stands in for a
// missing test/.
func noteFolder(o Options, img *folderImages, s *Splits) {
	f := o.Folder
	for _, n := range img.Notes {
		f.note("%s", n)
	}
	if k := img.Skipped.Count; k > 0 {
		which := fmt.Sprintf("the first %d", len(img.Skipped.First))
		if k == len(img.Skipped.First) {
			which = "each"
		}
		f.note("%s skipped (--strict stops instead); %s:\n  %s", filesWord(k, "bad image file was", "bad image files were"), which, strings.Join(img.Skipped.First, "\n  "))
	}
	if folderTrainDir(o.Dir) == o.Dir {
		f.note("%s has no train/, val/ or test/ folder: its %d class folders (%s) are the training images, as torchvision's ImageFolder reads them", o.Dir, len(s.Train.Classes), strings.Join(s.Train.Classes, ", "))
	}
	if s.Val != nil && o.ValFraction > 0 {
		f.note("%s has a %s/ folder: it is the validation split, and --val-fraction %v is not used", o.Dir, filepath.Base(folderSplitPath(o.Dir, 1)), o.ValFraction)
	}
	if s.Test == nil {
		if s.Val != nil || o.ValFraction > 0 {
			f.note("%s has no test/ folder: there is no test pass, and the validation figures are the run's result", o.Dir)
		} else {
			f.note("%s has neither test/ nor val/, and --val-fraction is 0: the run is not evaluated on held-out images", o.Dir)
		}
	}
}

// normalizeFolder normalises a folder set's splits (values in [0, 1]) per
// channel with the mean and standard deviation o gives (a trained model's,
// so that its evaluation sees inputs as its training did), else the
// training split's; the splits then carry them, as the built-in sets carry
// theirs. The values go through NormalizeImage's table, so that kiln
// predict's images match to the bit.
func normalizeFolder(s *Splits, o FolderOptions) error {
	mean, std := o.Mean, o.Std
	switch {
	case mean == nil && std == nil:
		mean, std = trainStats(s.Train)
	case len(mean) != s.Train.Channels || len(std) != s.Train.Channels:
		return fmt.Errorf("data: folder: the model's normalisation has %d means and %d deviations for images of %d channels", len(mean), len(std), s.Train.Channels)
	}
	hw := s.Train.Height * s.Train.Width
	for _, d := range []*Dataset{s.Train, s.Val, s.Test} {
		if d == nil {
			continue
		}
		for c := range mean {
			lut := byteTable(mean[c], std[c])
			for i := range d.Len() {
				p := d.Image(i)[c*hw : (c+1)*hw]
				for j, v := range p {
					p[j] = lut[toByte(v)]
				}
			}
		}
		d.Mean, d.Std = slices.Clone(mean), slices.Clone(std)
	}
	return nil
}

// trainStats are the per-channel mean and standard deviation of tr's
// values in [0, 1].
func trainStats(tr *Dataset) (mean, std []float64) {
	hw := tr.Height * tr.Width
	mean, std = make([]float64, tr.Channels), make([]float64, tr.Channels)
	for c := range mean {
		var hist [256]int64
		for i := range tr.Len() {
			for _, v := range tr.Image(i)[c*hw : (c+1)*hw] {
				hist[toByte(v)]++
			}
		}
		var n, sum, sq float64
		for b, k := range hist {
			v := float64(b) / 255
			n, sum, sq = n+float64(k), sum+float64(k)*v, sq+float64(k)*v*v
		}
		mean[c] = sum / n
		std[c] = math.Sqrt(math.Max(sq/n-mean[c]*mean[c], 0))
		if std[c] < 1e-6 { // a constant channel: nothing to scale
			std[c] = 1
		}
	}
	return mean, std
}

// toByte recovers the byte b of a value b/255 (within float32 rounding of
// it, far from the half-way points).
func toByte(v float32) byte { return byte(v*255 + 0.5) }

// filesWord is "n " and one or many, as n needs.
func filesWord(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
