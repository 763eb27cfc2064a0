package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// defaultRunDir makes and returns runs/<prefix>-<date>-<time>, with -2,
// -3, … after it when a directory of that name is there already: two
// commands started in the same second (one after the other in a script, or
// together with &) would otherwise share a name, the second refused as a
// resume of the first or as in use, or an lr-find's results overwritten by
// the next one's. Made with os.Mkdir, so that two processes cannot both
// take one name; the caller removes it if it is still empty when the
// command fails (removeIfEmpty).
func defaultRunDir(prefix string) string {
	base := filepath.Join("runs", fmt.Sprintf("%s-%s", prefix, time.Now().Format("20060102-150405")))
	if err := os.MkdirAll("runs", 0o755); err != nil {
		return base // opening it will say why
	}
	dir := base
	for n := 2; ; n++ {
		err := os.Mkdir(dir, 0o755)
		if !os.IsExist(err) {
			return dir // made, or unmakeable: opening it will say why
		}
		dir = base + "-" + strconv.Itoa(n)
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

// removeIfEmpty removes a default run directory that nothing was written
// to (the command failed before it began).
func removeIfEmpty(dir string) { _ = os.Remove(dir) }
