// Package kernelsrc names the CUDA kernel sources (kernels/*.cu, *.cuh, *.h)
// by one hash. The emulator compiles them into the cuda package by
// #include from outside it, where Go's build cache does not look: the hash,
// generated into the package (go generate ./engine), is what makes an edited
// kernel recompile, and what a test compares to tell a stale emulator.
package kernelsrc

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// generated is the one-unit file `make kernels` writes from the others.
const generated = "all.cu"

// SHA is the SHA-256 of the kernel sources under root/kernels, each file's
// name and contents in name order.
func SHA(root string) (string, error) {
	var paths []string
	for _, pat := range []string{"*.cu", "*.cuh", "*.h"} {
		m, err := filepath.Glob(filepath.Join(root, "kernels", pat))
		if err != nil {
			return "", err
		}
		paths = append(paths, m...)
	}
	sort.Strings(paths)
	h := sha256.New()
	n := 0
	for _, p := range paths {
		if filepath.Base(p) == generated {
			continue
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", filepath.Base(p), len(src))
		h.Write(src)
		n++
	}
	if n == 0 {
		return "", fmt.Errorf("no kernel sources in %s", filepath.Join(root, "kernels"))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Root is the module root above dir: the nearest directory with a go.mod.
func Root(dir string) (string, error) {
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", fmt.Errorf("no go.mod above %s", dir)
		}
		dir = up
	}
}
