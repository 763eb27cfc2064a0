package data

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// idxSpec describes an IDX data set of 28×28 grey images.
type idxSpec struct {
	name      string
	classes   []string
	mean, std float64
}

var (
	mnistSpec = idxSpec{
		name:    "mnist",
		classes: []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"},
		mean:    0.1307, std: 0.3081,
	}
	fashionSpec = idxSpec{
		name: "fashion-mnist",
		classes: []string{"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
			"Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"},
		mean: 0.2860, std: 0.3530,
	}
)

const idxSide = 28

// idxRoles are the four files of an IDX data set, each with the spellings
// accepted (a .gz suffix is tried on each, after the name alone: torchvision's
// MNIST/raw holds both, and a damaged download's .gz stopped a set whose
// extracted files were whole).
var idxRoles = [4][]string{
	{"train-images-idx3-ubyte", "train-images.idx3-ubyte"},
	{"train-labels-idx1-ubyte", "train-labels.idx1-ubyte"},
	{"t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"},
	{"t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"},
}

// findIDXFiles returns the paths of the four files in dir, or the first
// missing file's name.
func findIDXFiles(dir string) (paths [4]string, missing string) {
	for i, names := range idxRoles {
		for _, n := range names {
			for _, suffix := range []string{"", ".gz"} {
				p := filepath.Join(dir, n+suffix)
				if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
					paths[i] = p
					break
				}
			}
			if paths[i] != "" {
				break
			}
		}
		if paths[i] == "" {
			return paths, names[0] + "[.gz]"
		}
	}
	return paths, ""
}

// idxPart is one split's raw contents: n images of 28×28 bytes and n labels.
type idxPart struct {
	pixels []byte
	labels []byte
	n      int
	source string
}

// readIDXPair reads and cross-checks an images file and its labels file.
func readIDXPair(imgPath, lblPath string, numClasses int) (*idxPart, error) {
	dims, pixels, err := readIDXOrTwin(&imgPath, 3)
	if err != nil {
		return nil, err
	}
	if dims[1] != idxSide || dims[2] != idxSide {
		return nil, fileErr(imgPath, "wrong dimensions: images are %d×%d, want %d×%d", dims[1], dims[2], idxSide, idxSide)
	}
	ldims, labels, err := readIDXOrTwin(&lblPath, 1)
	if err != nil {
		return nil, err
	}
	if ldims[0] != dims[0] {
		return nil, fileErr(lblPath, "holds %d labels but %s holds %d images", ldims[0], imgPath, dims[0])
	}
	for i, l := range labels {
		if int(l) >= numClasses {
			return nil, fileErr(lblPath, "label %d of item %d is out of range 0..%d", l, i, numClasses-1)
		}
	}
	return &idxPart{pixels: pixels, labels: labels, n: dims[0], source: filepath.Dir(imgPath)}, nil
}

// readIDXOrTwin reads the IDX file at *path or, when that fails, its twin
// beside it (the .gz of an extracted file, or the reverse: torchvision's
// raw folder holds both, and an interrupted extraction or download spoils
// one), setting *path to the one read. The error is the first file's.
func readIDXOrTwin(path *string, rank int) (dims []int, data []byte, err error) {
	dims, data, err = readIDX(*path, rank)
	if err == nil {
		return dims, data, nil
	}
	twin := *path + ".gz"
	if strings.HasSuffix(*path, ".gz") {
		twin = strings.TrimSuffix(*path, ".gz")
	}
	if st, serr := os.Stat(twin); serr != nil || !st.Mode().IsRegular() {
		return nil, nil, err
	}
	if d, b, terr := readIDX(twin, rank); terr == nil {
		*path = twin
		return d, b, nil
	}
	return nil, nil, err
}

// readIDXSplits reads the training and test files concurrently.
func readIDXSplits(paths [4]string, numClasses int) (train, test *idxPart, err error) {
	var wg sync.WaitGroup
	var testErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		test, testErr = readIDXPair(paths[2], paths[3], numClasses)
	}()
	train, err = readIDXPair(paths[0], paths[1], numClasses)
	wg.Wait()
	if err == nil {
		err = testErr
	}
	return train, test, err
}

// idxDataset normalises an IDX split into a Dataset.
func idxDataset(spec idxSpec, part *idxPart) *Dataset {
	d := &Dataset{
		Name: spec.name, Source: part.source, Task: Classification,
		Classes:  append([]string(nil), spec.classes...),
		Channels: 1, Height: idxSide, Width: idxSide,
		Mean: []float64{spec.mean}, Std: []float64{spec.std},
		Images: make([]float32, len(part.pixels)),
		Labels: make([]int32, part.n),
	}
	lut := byteTable(spec.mean, spec.std)
	normalizeBytes(d.Images, part.pixels, lut)
	for i, l := range part.labels {
		d.Labels[i] = int32(l)
	}
	return d
}

// normalizeBytes maps bytes through lut, in two halves at once.
func normalizeBytes(dst []float32, src []byte, lut *[256]float32) {
	half := len(src) / 2
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, b := range src[half:] {
			dst[half+i] = lut[b]
		}
	}()
	for i, b := range src[:half] {
		dst[i] = lut[b]
	}
	wg.Wait()
}

func loadIDXSet(spec idxSpec, dir string) (train, test *Dataset, err error) {
	paths, missing := findIDXFiles(dir)
	if missing != "" {
		return nil, nil, fileErr(dir, "no %s file", missing)
	}
	tr, te, err := readIDXSplits(paths, len(spec.classes))
	if err != nil {
		return nil, nil, err
	}
	return idxDataset(spec, tr), idxDataset(spec, te), nil
}

// describeIDX is the metadata of an IDX data set without its samples.
func describeIDX(spec idxSpec) *Dataset {
	return idxDataset(spec, &idxPart{})
}
