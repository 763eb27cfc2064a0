package data

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// FolderOptions configure the folder data set (see the package
// documentation).
type FolderOptions struct {
	// Size is the images' size as "HxW" (or one number for a square); empty
	// means 28x28 for a grey set and 32x32 for an RGB one, the zoo's inputs.
	Size string
	// Fit is "crop" (the default) or "pad": how an image of another aspect
	// ratio becomes Size.
	Fit string
	// Strict makes a bad image file an error; otherwise it is skipped,
	// counted and named in Splits.Skipped and through Note.
	Strict bool
	// Note receives what the loader says about the data (skipped files,
	// converted channels, a missing test split, the cache); nil drops it.
	Note func(msg string) `json:"-"`
	// CacheDir is where the decoded images are cached when the data
	// directory cannot be written; empty means os.UserCacheDir()/kiln.
	CacheDir string
	// Mean and Std, one a channel, normalise every split as a trained
	// model's inputs were (its model.json's) instead of by the training
	// split's statistics, which depend on the validation fraction and
	// subset the split was loaded with.
	Mean, Std []float64
}

// Skipped lists the bad image files a non-strict folder load left out.
type Skipped struct {
	Count int      `json:"count"`
	First []string `json:"first"` // the first few, each "path: problem"
}

// maxSkippedNames bounds Skipped.First: a folder of thousands of bad files
// needs a count and some examples, not every name.
const maxSkippedNames = 10

// imageExts are the file name endings the folder set reads, lower case.
var imageExts = []string{".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp"}

// folderSplitNames are the subdirectories of a folder set, in Splits order.
var folderSplitNames = [3]string{"train", "val", "test"}

// folderValNames are the names a validation folder goes by: Roboflow's and
// others' exports write valid/ (a set's valid/ was left out without a word,
// the validation split drawn from train/ instead).
var folderValNames = []string{"val", "valid", "validation"}

// folderSplitPath is where split s of the set at dir would be: DIR/train,
// the first of DIR/val, valid and validation that is a folder (else
// DIR/val), DIR/test.
func folderSplitPath(dir string, s int) string {
	if s == 1 {
		for _, name := range folderValNames {
			if isDir(filepath.Join(dir, name)) {
				return filepath.Join(dir, name)
			}
		}
	}
	return filepath.Join(dir, folderSplitNames[s])
}

func (f FolderOptions) note(format string, args ...any) {
	if f.Note != nil {
		f.Note(fmt.Sprintf(format, args...))
	}
}

// size parses Size; 0, 0 when it is empty.
func (f FolderOptions) size() (h, w int, err error) {
	if f.Size == "" {
		return 0, 0, nil
	}
	hs, ws, ok := strings.Cut(strings.ToLower(strings.TrimSpace(f.Size)), "x")
	if !ok {
		ws = hs
	}
	h, errH := strconv.Atoi(hs)
	w, errW := strconv.Atoi(ws)
	if errH != nil || errW != nil || h < 1 || w < 1 || h > 4096 || w > 4096 {
		return 0, 0, fmt.Errorf("data: folder: image size %q: want HxW, e.g. 28x28, each side in [1, 4096]", f.Size)
	}
	return h, w, nil
}

func (f FolderOptions) check() error {
	if f.Fit != "" && f.Fit != "crop" && f.Fit != "pad" {
		return fmt.Errorf("data: folder: image fit %q: want crop or pad", f.Fit)
	}
	_, _, err := f.size()
	return err
}

// folderFile is one image file of a folder set.
type folderFile struct {
	split int    // index in folderSplitNames
	class int    // index in the set's classes
	path  string // as found under the data directory
	rel   string // relative to the data directory, for the cache key and messages
	size  int64
	mtime int64 // nanoseconds
}

// folderListing is every image file of a folder set, the classes (train's
// folders, sorted) and which splits have a folder.
type folderListing struct {
	dir     string
	classes []string
	present [3]bool
	files   []folderFile
	ignored []string // files that are not images, by name
	broken  []string // entries that could not be looked at, "path: problem"
}

// listFolder lists dir's train/, val/ and test/ class folders (train/ may be
// dir itself: folderTrainDir). A layout that cannot be a data set is an
// error naming the folder at fault.
func listFolder(dir string) (*folderListing, error) {
	if dir == "" {
		return nil, errors.New("data: folder: --data-dir DIR is required: DIR/train/<class>/<image> (and optionally DIR/val/ and DIR/test/), or DIR/<class>/<image>")
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fileErr(dir, "%v", unwrapPath(err))
	}
	if !st.IsDir() {
		return nil, fileErr(dir, "not a directory: the folder set wants DIR/train/<class>/<image> or DIR/<class>/<image>")
	}
	if !isDir(folderTrainDir(dir)) {
		return nil, fileErr(dir, "no train/ folder beside %s: the folder set wants DIR/train/<class>/<image> (or, with no val/, valid/, validation/ or test/, DIR/<class>/<image>, whose classes cannot have those names)", strings.Join(presentSplits(dir), " or "))
	}
	var vals []string
	for _, name := range folderValNames {
		if isDir(filepath.Join(dir, name)) {
			vals = append(vals, name+"/")
		}
	}
	if len(vals) > 1 {
		return nil, fileErr(dir, "%s are both validation folders: keep one", strings.Join(vals, " and "))
	}
	l := &folderListing{dir: dir}
	for s := range folderSplitNames {
		sub := folderSplitPath(dir, s)
		if s == 0 {
			sub = folderTrainDir(dir)
		}
		if !isDir(sub) {
			continue
		}
		l.present[s] = true
		if err := l.listSplit(s, sub); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// presentSplits names the split folders other than train/ that dir has.
func presentSplits(dir string) []string {
	var found []string
	for _, name := range append(slices.Clone(folderValNames), folderSplitNames[2]) {
		if isDir(filepath.Join(dir, name)) {
			found = append(found, name+"/")
		}
	}
	return found
}

// folderTrainDir is where a folder set's training class folders are: DIR/train,
// or DIR itself when it has no train/, val/ or test/ (torchvision's
// ImageFolder and Keras's image_dataset_from_directory layout, DIR/<class>/<image>).
// A val/ or test/ without train/ is not taken for two classes.
func folderTrainDir(dir string) string {
	for s := range folderSplitNames {
		if isDir(folderSplitPath(dir, s)) {
			return filepath.Join(dir, folderSplitNames[0])
		}
	}
	return dir
}

// FolderHasTest says whether the folder set at dir has a test/ split, without
// reading it (kiln eval asks before decoding a folder for nothing).
func FolderHasTest(dir string) bool { return isDir(filepath.Join(dir, folderSplitNames[2])) }

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// listSplit lists one split's class folders: train's make the classes; a
// class of val or test must be one of them.
func (l *folderListing) listSplit(s int, sub string) error {
	entries, err := os.ReadDir(sub)
	if err != nil {
		return fileErr(sub, "%v", unwrapPath(err))
	}
	var classes []string
	for _, e := range entries {
		p := filepath.Join(sub, e.Name())
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			if !utf8.ValidString(e.Name()) {
				// model.json (JSON) would keep it as U+FFFD: two such
				// classes would become one name.
				return fileErr(p, "a class folder whose name is not UTF-8 (%q): rename it, since the class names go into model.json", e.Name())
			}
			classes = append(classes, e.Name())
		} else if err != nil {
			return fileErr(p, "%v", unwrapPath(err))
		} else {
			l.ignored = append(l.ignored, p)
		}
	}
	if len(classes) == 0 {
		return fileErr(sub, "no class folders: the folder set wants %s/<class>/<image>, one folder a class", sub)
	}
	slices.Sort(classes)
	if s == 0 {
		l.classes = classes
	}
	for _, c := range classes {
		k := slices.Index(l.classes, c)
		if k < 0 {
			return fileErr(filepath.Join(sub, c), "class %q is not among train/'s classes (%s)", c, strings.Join(l.classes, ", "))
		}
		n := len(l.files)
		if err := l.walkClass(s, k, filepath.Join(sub, c), nil); err != nil {
			return err
		}
		if len(l.files) == n {
			return fileErr(filepath.Join(sub, c), "an empty class folder: no image files (%s) in it", strings.Join(imageExts, ", "))
		}
	}
	return nil
}

// walkClass adds the image files under a class folder, its subfolders
// included (symlinks followed); ancestors are the real paths above it, so
// that a symlink to one of them or to a folder above them is an error
// instead of an endless walk.
func (l *folderListing) walkClass(s, k int, dir string, ancestors []string) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fileErr(dir, "%v", unwrapPath(err))
	}
	if real, err = filepath.Abs(real); err != nil {
		return fileErr(dir, "%v", err)
	}
	for _, a := range ancestors {
		if strings.HasPrefix(a+string(filepath.Separator), real+string(filepath.Separator)) {
			return fileErr(dir, "a symlink loop: this folder is %s, which contains it", real)
		}
	}
	ancestors = append(ancestors, real)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fileErr(dir, "%v", unwrapPath(err))
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(dir, e.Name())
		st, err := os.Stat(p)
		switch {
		case err != nil:
			l.broken = append(l.broken, fmt.Sprintf("%s: %v", p, unwrapPath(err)))
		case st.IsDir():
			if err := l.walkClass(s, k, p, ancestors); err != nil {
				return err
			}
		case !slices.Contains(imageExts, strings.ToLower(filepath.Ext(e.Name()))):
			l.ignored = append(l.ignored, p)
		default:
			rel, _ := filepath.Rel(l.dir, p)
			l.files = append(l.files, folderFile{split: s, class: k, path: p, rel: rel, size: st.Size(), mtime: st.ModTime().UnixNano()})
		}
	}
	return nil
}

// unwrapPath drops a *fs.PathError's path and operation: the FileError
// names the path already.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
