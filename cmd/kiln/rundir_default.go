package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-ml/kiln/mpi"
)

// defaultRunDir makes and returns runs/<prefix>-<date>-<time>, with -2,
// -3, … after it when a directory of that name is there already: two
// commands started in the same second (one after the other in a script, or
// together with &) would otherwise share a name, the second refused as a
// resume of the first or as in use, or an lr-find's results overwritten by
// the next one's. Made with os.Mkdir, so that two processes cannot both
// take one name; cleanup removes it (and runs/, if this made it) when the
// command ends with nothing written there. Under a launcher only rank 0,
// which alone writes the run directory, makes it: the others take the name
// without it.
func defaultRunDir(prefix string) (dir string, cleanup func()) {
	base := filepath.Join("runs", fmt.Sprintf("%s-%s", prefix, time.Now().Format("20060102-150405")))
	if l, ok := mpi.Launched(); ok && l.Size > 1 && l.Rank != 0 {
		return base, func() {}
	}
	_, err := os.Stat("runs")
	madeRuns := os.IsNotExist(err)
	if err := os.MkdirAll("runs", 0o755); err != nil {
		return base, func() {} // opening it will say why
	}
	dir = base
	for n := 2; ; n++ {
		err := os.Mkdir(dir, 0o755)
		if !os.IsExist(err) {
			break // made, or unmakeable: opening it will say why
		}
		dir = base + "-" + strconv.Itoa(n)
	}
	return dir, func() {
		_ = os.Remove(dir) // empty only: a command that wrote nothing there
		if madeRuns {
			_ = os.Remove("runs")
		}
	}
}

// shellQuote is path as a shell takes it, for the commands messages give to
// paste: as it is when it needs no quoting, else in single quotes.
func shellQuote(path string) string {
	if path != "" && strings.Trim(path, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:@%+=,-") == "" {
		return path
	}
	return "'" + strings.ReplaceAll(path, "'", `'\''`) + "'"
}
