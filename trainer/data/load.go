package data

import (
	"fmt"
	"path/filepath"
	"strconv"
)

// Options choose where a data set is read from and how it is narrowed down.
type Options struct {
	// Dir is the data directory (--data-dir); see the package documentation
	// for where files are looked for when it is empty. For csv it may name
	// the file itself.
	Dir string
	// Classes keeps only these classes, relabelled 0..k-1 in this order.
	Classes []int
	// Subset, in (0, 1], keeps a seeded fraction of the training samples and
	// of the test samples; 0 keeps everything.
	Subset float64
	// ValFraction, in [0, 1), moves a seeded fraction of the training samples
	// into the validation split; 0 means no validation split.
	ValFraction float64
	// Seed seeds the subset, the validation split, mnist-rotation's angles
	// and csv's held-out test rows.
	Seed uint64
	// CSV configures the csv data set.
	CSV CSVOptions
	// Folder configures the folder data set.
	Folder FolderOptions
}

// Splits are the parts of a loaded data set. Val is nil without a validation
// fraction (or a folder set's val/); Test is nil for a folder set without
// test/.
type Splits struct {
	Train, Val, Test *Dataset
	// Skipped counts the bad image files a folder set left out; nil for the
	// other sets and for a folder without any.
	Skipped *Skipped
}

// Names lists the data sets Load knows.
func Names() []string {
	return []string{"mnist", "fashion-mnist", "cifar10", "mnist-rotation", "csv", "folder"}
}

func (o Options) check() error {
	if !(o.Subset >= 0 && o.Subset <= 1) {
		return fmt.Errorf("data: subset %v is not a fraction in (0, 1]", o.Subset)
	}
	if !(o.ValFraction >= 0 && o.ValFraction < 1) {
		return fmt.Errorf("data: validation fraction %v is not in [0, 1)", o.ValFraction)
	}
	return nil
}

// Load reads data set name and returns its training, validation and test
// splits, narrowed down as Options say (classes, then subset, then the
// validation split, which is always taken from the training samples unless
// a folder set has its own val/).
func Load(name string, o Options) (*Splits, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	s, err := loadSplits(name, o)
	if err != nil {
		return nil, err
	}
	for i, d := range []**Dataset{&s.Train, &s.Val, &s.Test} {
		if *d == nil {
			continue
		}
		if len(o.Classes) > 0 {
			if *d, err = (*d).KeepClasses(o.Classes); err != nil {
				return nil, err
			}
		}
		if o.Subset > 0 && o.Subset < 1 {
			if *d, err = (*d).sample(o.Subset, o.Seed, []uint64{splitTrain, splitVal, splitTest}[i]); err != nil {
				return nil, err
			}
		}
	}
	if o.ValFraction > 0 && s.Val == nil {
		if s.Train, s.Val, err = s.Train.splitOwned(o.ValFraction, o.Seed); err != nil { // Load's own set
			return nil, err
		}
	}
	for i, d := range []*Dataset{s.Train, s.Val, s.Test} {
		if d != nil && d.Len() == 0 {
			return nil, emptySplitError(name, []string{"training", "validation", "test"}[i], o, s.Skipped)
		}
	}
	if name == "folder" {
		if err := normalizeFolder(s, o.Folder); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// emptySplitError says which split was left with no samples and by what: a
// folder's split whose every image was bad, or the settings that select.
func emptySplitError(name, split string, o Options, skipped *Skipped) error {
	folder := map[string]string{"training": "train/", "validation": filepath.Base(folderSplitPath(o.Dir, 1)) + "/", "test": "test/"}[split]
	if name == "folder" && skipped != nil && skipped.Count > 0 {
		return fmt.Errorf("data: folder: the %s split (%s) has no image left: %d bad files were skipped (the first: %s)",
			split, folder, skipped.Count, skipped.First[0])
	}
	return fmt.Errorf("data: %s: the %s split has no samples left after --classes %v, --subset %v, --val-fraction %v",
		name, split, o.Classes, o.Subset, o.ValFraction)
}

// splitVal draws a folder set's own validation subset apart from the
// training and test ones.
const splitVal uint64 = 3

// loadSplits reads the full splits: training and test, and a folder set's
// own validation split.
func loadSplits(name string, o Options) (*Splits, error) {
	if name != "folder" {
		train, test, err := loadRaw(name, o)
		if err != nil {
			return nil, err
		}
		return &Splits{Train: train, Test: test}, nil
	}
	img, err := loadFolder(o)
	if err != nil {
		return nil, err
	}
	d := img.datasets(o.Dir)
	s := &Splits{Train: d[0], Val: d[1], Test: d[2]}
	if img.Skipped.Count > 0 {
		s.Skipped = &img.Skipped
	}
	noteFolder(o, img, s)
	return s, nil
}

// CheckClasses refuses a classification set whose samples all carry one
// label, naming it: a classifier trained on it scores 100% by answering that
// class and learns nothing, which PyTorch and Keras users would not expect
// to pass in silence. A data set of one class, or the samples that --classes
// or --subset left of several, are both refused. Regression sets pass.
func (d *Dataset) CheckClasses() error {
	if d.Task != Classification || len(d.Labels) == 0 {
		return nil
	}
	first := d.Labels[0]
	for _, l := range d.Labels[1:] {
		if l != first {
			return nil
		}
	}
	name := fmt.Sprint(first)
	if int(first) < len(d.Classes) {
		name = strconv.Quote(d.Classes[first])
	}
	advice := "keep at least two classes"
	if len(d.Classes) > 1 && len(d.Labels) < 10 {
		// The data had several classes: the held-out splits took the others.
		advice = "the test and validation splits (or --subset) took the other classes' samples: too few samples are left to split"
	}
	return fmt.Errorf("data: %s: every one of the %d training samples is of class %s (label %d of %d): a classifier has nothing to learn; %s",
		d.Name, len(d.Labels), name, first, len(d.Classes), advice)
}

// UnseenClasses names the classes of a classification set that none of its
// samples has (a CSV's class whose rows the test split took), in class
// order.
func (d *Dataset) UnseenClasses() []string {
	if d.Task != Classification {
		return nil
	}
	seen := make([]bool, len(d.Classes))
	for _, l := range d.Labels {
		if int(l) < len(seen) {
			seen[l] = true
		}
	}
	var unseen []string
	for i, ok := range seen {
		if !ok {
			unseen = append(unseen, strconv.Quote(d.Classes[i]))
		}
	}
	return unseen
}

// loadRaw reads the full training and test splits.
func loadRaw(name string, o Options) (train, test *Dataset, err error) {
	if name == "csv" {
		return loadCSV(o)
	}
	if _, ok := fileSets[name]; !ok && name != "mnist-rotation" {
		return nil, nil, unknownName(name)
	}
	if name == "mnist-rotation" && len(o.Classes) > 0 {
		return nil, nil, fmt.Errorf("data: mnist-rotation is a regression set: --classes does not apply")
	}
	dir, err := Locate(name, o.Dir)
	if err != nil {
		return nil, nil, err
	}
	switch name {
	case "mnist":
		return loadIDXSet(mnistSpec, dir)
	case "fashion-mnist":
		return loadIDXSet(fashionSpec, dir)
	case "cifar10":
		return loadCIFAR(dir)
	}
	// mnist-rotation
	paths, missing := findIDXFiles(dir)
	if missing != "" {
		return nil, nil, fileErr(dir, "no %s file", missing)
	}
	tr, te, err := readIDXSplits(paths, len(mnistSpec.classes))
	if err != nil {
		return nil, nil, err
	}
	return rotationDataset(tr, o.Seed, splitTrain), rotationDataset(te, o.Seed, splitTest), nil
}

// DescribeIn is Describe for the files in dir (found as Load finds them),
// whose CIFAR-10 batches.meta.txt may name the classes otherwise than the
// standard set: a model exported from its weights named them airplane…
// truck where the files said other names.
func DescribeIn(name, dir string) (*Dataset, error) {
	d, err := Describe(name)
	if err != nil || name != "cifar10" {
		return d, err
	}
	if found, err := Locate(name, dir); err == nil {
		d.Classes = cifarClassNames(found)
	}
	return d, nil
}

// Describe returns a built-in data set's metadata (task, shape, classes,
// normalisation, target scale) without reading any file. csv has no fixed
// description.
func Describe(name string) (*Dataset, error) {
	switch name {
	case "mnist":
		return describeIDX(mnistSpec), nil
	case "fashion-mnist":
		return describeIDX(fashionSpec), nil
	case "cifar10":
		return describeCIFAR(cifarClasses), nil
	case "mnist-rotation":
		return rotationDataset(&idxPart{}, 0, 0), nil
	case "csv":
		return nil, fmt.Errorf("data: csv has no fixed shape: load the file to learn it")
	case "folder":
		return nil, fmt.Errorf("data: an image folder's model has no fixed shape or classes: give --run DIR, the run that trained it (its model.json holds them)")
	}
	return nil, unknownName(name)
}
