package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// defaultRunDir is runs/<prefix>-<date>-<time>, with -2, -3, … after it
// when a directory of that name is there already: two commands started in
// the same second (one after the other in a script) would otherwise share
// a name, the second refused as a resume of the first, or an lr-find's
// results overwritten by the next one's.
func defaultRunDir(prefix string) string {
	base := filepath.Join("runs", fmt.Sprintf("%s-%s", prefix, time.Now().Format("20060102-150405")))
	dir := base
	for n := 2; ; n++ {
		if _, err := os.Lstat(dir); err != nil { // not there (or unreadable: opening it will say why)
			return dir
		}
		dir = base + "-" + strconv.Itoa(n)
	}
}
