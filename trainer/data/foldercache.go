package data

import (
	"bytes"
	"crypto/sha256"
	"encoding/gob"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

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

// readFolderCache returns the cached images decoded under key from l, and
// where they were; nil when no cache holds them. damaged names the cache
// files that are there but fail their checksum or do not match l.
func readFolderCache(l *folderListing, f FolderOptions, key [32]byte) (img *folderImages, where string, damaged []string) {
	for _, p := range folderCachePaths(l.dir, f) {
		// A run that reads the cache never writes one, so a temporary file
		// a killed writer left beside it would stay for good.
		removeStaleCacheTemps(filepath.Dir(p))
		img, err := readCacheFile(p)
		switch {
		case err == nil && img.Key == key && img.valid() && slices.Equal(img.Classes, l.classes):
			return img, p, damaged
		case errors.Is(err, errCacheDamaged):
			damaged = append(damaged, p)
		}
	}
	return nil, "", damaged
}

// errCacheDamaged: a cache file's bytes do not match its checksum, and it
// is not an older Kiln's cache either (a gob alone, before the checksum),
// which is simply decoded again.
var errCacheDamaged = errors.New("cache file damaged")

// A cache file is the gob of its folderImages followed by the SHA-256 of
// that gob: a bit flipped anywhere (a disk, a kill mid-write on a file
// system without atomic rename) decodes again rather than trains on it.
func readCacheFile(path string) (*folderImages, error) {
	fh, _, err := userfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(fh)
	if err != nil {
		return nil, err
	}
	if len(b) < sha256.Size {
		return nil, errCacheDamaged
	}
	body, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if want := sha256.Sum256(body); !bytes.Equal(sum, want[:]) {
		// The whole file one gob value, nothing after it: an older cache.
		var old folderImages
		if r := bytes.NewReader(b); gob.NewDecoder(r).Decode(&old) == nil && r.Len() == 0 {
			return nil, errors.New("a cache of an older Kiln")
		}
		return nil, errCacheDamaged
	}
	var img folderImages
	if err := gob.NewDecoder(bytes.NewReader(body)).Decode(&img); err != nil {
		return nil, err
	}
	return &img, nil
}

// valid checks what a cache written by another version could get wrong.
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
		removeStaleCacheTemps(filepath.Dir(p))
		err := durable.WriteStream(p, func(w io.Writer) error {
			h := sha256.New()
			if err := gob.NewEncoder(io.MultiWriter(w, h)).Encode(img); err != nil {
				return err
			}
			_, err := w.Write(h.Sum(nil))
			return err
		})
		if err == nil {
			return p, nil
		}
		errs = append(errs, err.Error())
	}
	return "", fmt.Errorf("%s", strings.Join(errs, "; "))
}

// staleCacheTemp is how long a cache's temporary file goes unwritten before
// it counts as left by a killed writer: a live one writes a megabyte at a
// time, so its modification time stays recent.
const staleCacheTemp = 10 * time.Minute

// removeStaleCacheTemps removes the temporary cache files a writer killed
// mid-write left in dir (a megabyte or more of pixels each), only those of
// cache files and only stale ones: another process may be writing its own.
func removeStaleCacheTemps(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		base, ok := durable.TempOf(e.Name())
		if !ok || !strings.Contains(base, "kiln-cache-") {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > staleCacheTemp {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
