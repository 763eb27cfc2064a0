package data

import (
	"bufio"
	"crypto/sha256"
	"encoding/gob"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kiln-ml/kiln/internal/durable"
	"github.com/kiln-ml/kiln/internal/userfile"
)

// key identifies what a cache was decoded from: every file's name, size and
// modification time, the entries that could not be read, and the settings
// that change the pixels. Any change decodes again.
func (l *folderListing) key(f FolderOptions) [32]byte {
	h := sha256.New()
	fmt.Fprintf(h, "kiln folder cache %d\x00%s\x00%s\n", folderCacheVersion, f.Size, f.Fit)
	for _, fl := range l.files {
		fmt.Fprintf(h, "%d\x00%s\x00%d\x00%d\n", fl.split, fl.rel, fl.size, fl.mtime)
	}
	for _, b := range l.broken {
		fmt.Fprintf(h, "broken\x00%s\n", b)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

// folderCachePaths are where a folder set's cache may be: beside the data,
// then in the user's cache directory (for a data directory that cannot be
// written), named after the data directory's absolute path there.
func folderCachePaths(dir string, f FolderOptions) []string {
	size := strings.ToLower(f.Size)
	if size == "" {
		size = "auto"
	}
	fit := f.Fit
	if fit == "" {
		fit = "crop"
	}
	name := "kiln-cache-" + size + "-" + fit
	paths := []string{filepath.Join(dir, "."+name)}
	root := f.CacheDir
	if root == "" {
		if c, err := os.UserCacheDir(); err == nil {
			root = filepath.Join(c, "kiln")
		}
	}
	if abs, err := filepath.Abs(dir); err == nil && root != "" {
		sum := sha256.Sum256([]byte(abs))
		paths = append(paths, filepath.Join(root, "folder-"+hex.EncodeToString(sum[:8])+"-"+name))
	}
	return paths
}

// readFolderCache returns the cached images decoded under key, and where
// they were; nil when no cache holds them.
func readFolderCache(dir string, f FolderOptions, key [32]byte) (*folderImages, string) {
	for _, p := range folderCachePaths(dir, f) {
		img, err := readCacheFile(p)
		if err == nil && img.Key == key && img.valid() {
			return img, p
		}
	}
	return nil, ""
}

func readCacheFile(path string) (*folderImages, error) {
	fh, _, err := userfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var img folderImages
	if err := gob.NewDecoder(bufio.NewReader(fh)).Decode(&img); err != nil {
		return nil, err
	}
	return &img, nil
}

// valid checks what a damaged cache file could get wrong.
func (img *folderImages) valid() bool {
	s := img.Channels * img.Height * img.Width
	if img.Version != folderCacheVersion || s <= 0 || len(img.Classes) == 0 {
		return false
	}
	for sp := range img.Pixels {
		if len(img.Pixels[sp]) != len(img.Labels[sp])*s {
			return false
		}
		for _, l := range img.Labels[sp] {
			if l < 0 || int(l) >= len(img.Classes) {
				return false
			}
		}
	}
	return true
}

// writeFolderCache writes img beside the data or, failing that, in the
// user's cache directory, atomically, and says where.
func writeFolderCache(dir string, f FolderOptions, img *folderImages) (string, error) {
	var errs []string
	for i, p := range folderCachePaths(dir, f) {
		if i > 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				errs = append(errs, err.Error())
				continue
			}
		}
		err := durable.WriteStream(p, func(w io.Writer) error { return gob.NewEncoder(w).Encode(img) })
		if err == nil {
			return p, nil
		}
		errs = append(errs, err.Error())
	}
	return "", fmt.Errorf("%s", strings.Join(errs, "; "))
}
