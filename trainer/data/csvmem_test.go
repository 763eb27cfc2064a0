package data

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// Parsing a wide csv must not hold every field as a string: that made the
// parse, not the training, the peak of a run on a wide file (a 64 MB file
// of 4000 rows × 2000 columns reached 480 MB of RSS, against an estimate of
// 7 MiB for training). Rows are turned into numbers as they are read, so
// the parse allocates about the file once as strings (each freed with its
// row) and once as float64s.
func TestParseCSVAllocatesLittleMoreThanTheFile(t *testing.T) {
	var b strings.Builder
	for j := range 400 {
		fmt.Fprintf(&b, "f%d,", j)
	}
	b.WriteString("label\n")
	for i := range 1000 {
		for j := range 400 {
			fmt.Fprintf(&b, "%d.%04d,", (i+j)%10, (i*j)%10000)
		}
		fmt.Fprintf(&b, "%d\n", i%3)
	}
	raw := []byte(b.String())
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	tab, err := parseCSV("wide.csv", raw, CSVOptions{}, nil)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if tab.rows() != 1000 || len(tab.features) != 1000*400 || tab.header == nil {
		t.Fatalf("%d rows, %d features, header %v", tab.rows(), len(tab.features), tab.header != nil)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 3*uint64(len(raw)) {
		t.Errorf("parsing %d bytes allocated %d (%.1f×)", len(raw), alloc, float64(alloc)/float64(len(raw)))
	}
}
