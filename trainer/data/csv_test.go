package data

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const irisLike = `sepal_length,sepal_width,petal_length,petal_width,species
5.1,3.5,1.4,0.2,setosa
4.9,3.0,1.4,0.2,setosa
7.0,3.2,4.7,1.4,versicolor
6.4,3.2,4.5,1.5,versicolor
6.3,3.3,6.0,2.5,virginica
5.8,2.7,5.1,1.9,virginica
5.0,3.6,1.4,0.2,setosa
5.9,3.0,4.2,1.5,versicolor
6.5,3.0,5.8,2.2,virginica
5.4,3.9,1.7,0.4,setosa
`

func TestCSVClassification(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "iris.csv")
	writeFile(t, p, []byte(irisLike))
	s, err := Load("csv", Options{Dir: p, Seed: 3, CSV: CSVOptions{TestFraction: 0.3}})
	if err != nil {
		t.Fatal(err)
	}
	tr, te := s.Train, s.Test
	if tr.Task != Classification || strings.Join(tr.Classes, ",") != "setosa,versicolor,virginica" {
		t.Fatalf("task %v classes %v", tr.Task, tr.Classes)
	}
	if tr.Len() != 7 || te.Len() != 3 || tr.Channels != 4 || tr.Height != 1 || tr.Width != 1 {
		t.Fatalf("%d/%d rows of shape %v", tr.Len(), te.Len(), tr.Shape())
	}
	if err := tr.Validate(); err != nil {
		t.Fatal(err)
	}
	// Standardised with the training rows' statistics.
	for c := 0; c < 4; c++ {
		col := make([]float32, tr.Len())
		for i := range col {
			col[i] = tr.Images[i*4+c]
		}
		m, sd := stats(col)
		if !near(m, 0, 1e-5) || !near(sd, 1, 1e-5) {
			t.Errorf("feature %d: mean %v std %v", c, m, sd)
		}
	}
	// The same seed holds out the same rows.
	s2, err := Load("csv", Options{Dir: p, Seed: 3, CSV: CSVOptions{TestFraction: 0.3}})
	if err != nil || fmt.Sprint(s2.Test.Images) != fmt.Sprint(te.Images) {
		t.Errorf("held-out rows differ for one seed (%v)", err)
	}

	// Integer labels, no header, target in the first column, a test file.
	writeFile(t, filepath.Join(dir, "train.csv"), []byte("3,0.5,1\n1,0.25,2\n3,1.0,3\n1.0,2,4\n"))
	writeFile(t, filepath.Join(dir, "test.csv"), []byte("1,7,7\n3,8,8\n"))
	s, err = Load("csv", Options{Dir: dir, CSV: CSVOptions{Target: "0"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.Train.Classes, ",") != "1,3" || fmt.Sprint(s.Train.Labels) != "[1 0 1 0]" || fmt.Sprint(s.Test.Labels) != "[0 1]" {
		t.Errorf("classes %v labels %v test labels %v", s.Train.Classes, s.Train.Labels, s.Test.Labels)
	}
	if s.Test.Source != filepath.Join(dir, "test.csv") || s.Train.Channels != 2 {
		t.Errorf("test from %q, %d features", s.Test.Source, s.Train.Channels)
	}
	// Classes and a validation split apply as for images.
	s, err = Load("csv", Options{Dir: p, ValFraction: 0.25, Classes: []int{2, 0}})
	if err != nil {
		t.Fatal(err)
	}
	if s.Train.Classes[0] != "virginica" || s.Train.Len()+s.Val.Len()+s.Test.Len() != 7 {
		t.Errorf("classes %v, %d+%d+%d rows", s.Train.Classes, s.Train.Len(), s.Val.Len(), s.Test.Len())
	}
}

func TestCSVRegression(t *testing.T) {
	var b strings.Builder
	b.WriteString("x1;x2;y\n")
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&b, "%d;%g;%g\n", i, float64(i%7)/3, 2.5*float64(i)+0.125)
	}
	p := filepath.Join(t.TempDir(), "reg.csv")
	writeFile(t, p, []byte(b.String()))
	s, err := Load("csv", Options{Dir: p, CSV: CSVOptions{Comma: ';', Target: "y"}})
	if err != nil {
		t.Fatal(err)
	}
	tr := s.Train
	if tr.Task != Regression || tr.TargetName != "y" || tr.Len() != 40 || s.Test.Len() != 10 {
		t.Fatalf("task %v target %q, %d/%d rows", tr.Task, tr.TargetName, tr.Len(), s.Test.Len())
	}
	m, sd := stats(tr.Targets)
	if !near(m, 0, 1e-5) || !near(sd, 1, 1e-5) {
		t.Errorf("stored targets: mean %v std %v", m, sd)
	}
	// TargetValue undoes the standardisation: y = 2.5·x1 + 0.125, and x1 is
	// recovered from its own standardisation.
	for _, d := range []*Dataset{tr, s.Test} {
		for i := 0; i < d.Len(); i++ {
			x1 := float64(d.Images[i*2])*d.Std[0] + d.Mean[0]
			if y := d.TargetValue(float64(d.Targets[i])); math.Abs(y-(2.5*x1+0.125)) > 1e-3 {
				t.Fatalf("row %d: target %v for x1 = %v", i, y, x1)
			}
		}
	}
	// Forced classification makes every distinct value of the file a
	// class, those of the held-out rows too.
	s, err = Load("csv", Options{Dir: p, CSV: CSVOptions{Comma: ';', Task: "classification"}})
	if err != nil || len(s.Train.Classes) != 50 || len(s.Test.Classes) != 50 {
		t.Fatalf("forced classification of 50 values: %v", err)
	}
}

// A file Excel saved as "CSV UTF-8" (a byte-order mark first) reads as the
// same file without one: every row, the header found or not as without it.
func TestCSVByteOrderMark(t *testing.T) {
	for _, body := range []string{"1,2,0\n3,4,1\n5,6,0\n7,8,1\n", "a,b,y\n1,2,0\n3,4,1\n5,6,0\n7,8,1\n"} {
		p := filepath.Join(t.TempDir(), "d.csv")
		writeFile(t, p, []byte("\ufeff"+body))
		s, err := Load("csv", Options{Dir: p, CSV: CSVOptions{TestFraction: 0.25}})
		if err != nil {
			t.Fatal(err)
		}
		if n := s.Train.Len() + s.Test.Len(); n != 4 {
			t.Errorf("%q with a byte-order mark: %d rows, want 4", body, n)
		}
	}
}

// Lines ended by CR alone (classic Mac OS) read as lines, as Python's csv
// module reads them; encoding/csv saw one line of 9 fields.
func TestCSVCarriageReturnLines(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d.csv")
	writeFile(t, p, []byte("a,b,y\r1,2,0\r3,4,1\r5,6,0\r7,8,1\r"))
	s, err := Load("csv", Options{Dir: p, CSV: CSVOptions{TestFraction: 0.25}})
	if err != nil {
		t.Fatal(err)
	}
	if n := s.Train.Len() + s.Test.Len(); n != 4 || s.Train.Channels != 2 {
		t.Errorf("%d rows of %d features, want 4 of 2", n, s.Train.Channels)
	}
}

func TestCSVBadInput(t *testing.T) {
	cases := []struct {
		name, content string
		o             CSVOptions
		fragment      []string
	}{
		{"missing value", "a,b,y\n1,2,0\n3,,1\n", CSVOptions{}, []string{"line 3", `column 2 ("b")`, "missing value"}},
		{"NA target", "a,b,y\n1,2,0\n3,4,1\n5,6,NA\n", CSVOptions{}, []string{"line 4", "target column 3", `"NA" is a missing`}},
		{"NaN target", "a,b,y\n1,2,0\n3,4,NaN\n5,6,1\n", CSVOptions{}, []string{"line 3", `"NaN" is a missing or non-finite`}},
		{"? target", "a,b,y\n1,2,0\n3,4,?\n5,6,1\n", CSVOptions{}, []string{"line 3", `"?" is a missing`}},
		{"not a number", "1,2,0\n3,x4,1\n", CSVOptions{}, []string{"line 2, column 2", `"x4" is not a number`}},
		{"nan", "1,2,0\n3,NaN,1\n", CSVOptions{}, []string{"not a finite number"}},
		{"missing target", "1,2,0\n3,4,\n", CSVOptions{}, []string{"line 2, target column 3", "missing value"}},
		{"field count", "1,2,0\n3,4\n", CSVOptions{}, []string{"line 2", "wrong number of fields"}},
		{"quote", "1,2,0\n3,\"4,1\n", CSVOptions{}, []string{"line 2"}},
		{"one column", "1\n2\n", CSVOptions{}, []string{"1 column"}},
		{"empty", "", CSVOptions{}, []string{"no rows"}},
		{"header only", "a,b\n", CSVOptions{}, []string{"no data rows"}},
		{"target name", "1,2\n3,4\n", CSVOptions{Target: "y"}, []string{`target column "y" is a name but the file has no header`}},
		{"unknown name", "a,b\n1,2\n", CSVOptions{Target: "y"}, []string{`no column named "y"`}},
		{"target index", "1,2\n3,4\n", CSVOptions{Target: "5"}, []string{"out of range"}},
		{"regression text", "a,y\n1,u\n2,v\n", CSVOptions{Task: "regression"}, []string{"target column 2", "is not a number (a regression target must be a number)"}},
		{"one row", "1,2\n", CSVOptions{}, []string{"too few"}},
		// A first row with a missing value is data (its value an error),
		// not a header that drops the row.
		{"missing in row 1", ",1.5,0\n1,2,1\n3,4,0\n", CSVOptions{}, []string{"line 1", "missing value"}},
		{"nan in row 1", "NaN,1.5,0\n1,2,1\n3,4,0\n", CSVOptions{}, []string{"line 1", "not a finite number"}},
		// Files that are not CSV text, or not comma-separated, say what they are.
		{"gzip", "\x1f\x8b\x08\x00rest", CSVOptions{}, []string{"a gzip file", "gunzip"}},
		{"utf-16", "\xff\xfea\x00,\x00b\x00", CSVOptions{}, []string{"UTF-16", "UTF-8"}},
		{"xlsx", "PK\x03\x04rest", CSVOptions{}, []string{"zip file"}},
		{"semicolons", "a;b;y\n1,5;2;0\n3;4;1\n", CSVOptions{}, []string{"line 1", "separated by ';'"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "d.csv")
			writeFile(t, p, []byte(c.content))
			_, err := Load("csv", Options{Dir: p, CSV: c.o})
			wantFileError(t, err, p, c.fragment...)
			t.Log(err)
		})
	}
	dir := t.TempDir()
	// A test row beyond float32 once standardised names its line (it went
	// in as infinite, and the NaN loss was blamed on the weights).
	writeFile(t, filepath.Join(dir, "train.csv"), []byte("a,y\n0.001,0\n0.002,1\n0.003,0\n"))
	writeFile(t, filepath.Join(dir, "test.csv"), []byte("a,y\n0.002,0\n1e38,1\n"))
	_, err := Load("csv", Options{Dir: dir})
	wantFileError(t, err, filepath.Join(dir, "test.csv"), "line 3", `column 1 ("a")`, "beyond float32")
	writeFile(t, filepath.Join(dir, "train.csv"), []byte("1,a\n2,b\n"))
	writeFile(t, filepath.Join(dir, "test.csv"), []byte("1,c\n"))
	_, err = Load("csv", Options{Dir: dir})
	wantFileError(t, err, filepath.Join(dir, "test.csv"), `class "c" does not occur`)
	writeFile(t, filepath.Join(dir, "test.csv"), []byte("1,2,a\n"))
	_, err = Load("csv", Options{Dir: dir})
	wantFileError(t, err, filepath.Join(dir, "test.csv"), "has 3 columns")
	// Columns are matched by position: test.csv's header must name them in
	// train.csv's order.
	writeFile(t, filepath.Join(dir, "train.csv"), []byte("a,b,y\n1,2,p\n3,4,q\n5,6,p\n"))
	writeFile(t, filepath.Join(dir, "test.csv"), []byte("b,a,y\n2,1,p\n"))
	_, err = Load("csv", Options{Dir: dir})
	wantFileError(t, err, filepath.Join(dir, "test.csv"), `has the columns ["b" "a" "y"]`, "same order")

	for _, o := range []CSVOptions{{Header: "maybe"}, {Task: "ranking"}, {TestFraction: 1}} {
		if _, err := Load("csv", Options{Dir: filepath.Join(dir, "train.csv"), CSV: o}); err == nil {
			t.Errorf("options %+v accepted", o)
		}
	}
	if _, err := Load("csv", Options{}); err == nil || !strings.Contains(err.Error(), "--data-dir") {
		t.Errorf("csv without a file: %v", err)
	}
}

// In a column of class names, "none", "NA" or "?" are names (a class
// called none); among numbers they are missing values, refused.
func TestCSVMarkersAmongNamesAreClasses(t *testing.T) {
	p := filepath.Join(t.TempDir(), "d.csv")
	var b strings.Builder
	b.WriteString("a,b,y\n")
	for i := range 30 {
		fmt.Fprintf(&b, "%d,%d,%s\n", i, i%3, []string{"cat", "dog", "none"}[i%3])
	}
	writeFile(t, p, []byte(b.String()))
	s, err := Load("csv", Options{Dir: p})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(s.Train.Classes, "none") || len(s.Train.Classes) != 3 {
		t.Errorf("classes %v, want cat, dog, none", s.Train.Classes)
	}
}

// A file's classes are its own, whichever rows a seed holds out: a class of
// one row was refused as unseen by training for seeds that held it out (9,
// 25 and 29 of 1–30), and "-0" was a class beside "0".
func TestCSVClassesAreTheWholeFiles(t *testing.T) {
	var b strings.Builder
	b.WriteString("a,b,label\n")
	for i := range 99 {
		fmt.Fprintf(&b, "%d.5,%d,%s\n", i%7, i%5, []string{"0", "1", "-0", "1.0"}[i%4])
	}
	b.WriteString("0.5,0.5,2\n")
	p := filepath.Join(t.TempDir(), "rare.csv")
	writeFile(t, p, []byte(b.String()))
	for seed := uint64(1); seed <= 30; seed++ {
		s, err := Load("csv", Options{Dir: p, Seed: seed})
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if got := strings.Join(s.Train.Classes, ","); got != "0,1,2" || strings.Join(s.Test.Classes, ",") != got {
			t.Fatalf("seed %d: classes %s / %s, want 0,1,2", seed, got, strings.Join(s.Test.Classes, ","))
		}
	}
}

// pandas' df.to_csv() writes its index as a first column with an empty
// name: that row is a header (it was read as data, refused for its empty
// field), the index left out; a header of numbers is one only when told (Header "yes"), and
// Header "no" reads a first row of names as data.
func TestCSVHeaderOfPandasAndAsTold(t *testing.T) {
	dir := t.TempDir()
	pandas, numeric := filepath.Join(dir, "pandas.csv"), filepath.Join(dir, "numeric.csv")
	var p, n strings.Builder
	p.WriteString(",a,b,label\n")
	n.WriteString("400,500,species\n")
	for i := range 20 {
		fmt.Fprintf(&p, "%d,%d.5,%d,%d\n", i, i%7, i%3, i%2)
		fmt.Fprintf(&n, "%d.1,%d.2,%s\n", i%7, i%5, []string{"setosa", "virginica"}[i%2])
	}
	writeFile(t, pandas, []byte(p.String()))
	writeFile(t, numeric, []byte(n.String()))
	// Its index column is left out, said so: row numbers are no feature.
	var notes []string
	s, err := Load("csv", Options{Dir: pandas, CSV: CSVOptions{Note: func(m string) { notes = append(notes, m) }}})
	if err != nil || s.Train.Len()+s.Test.Len() != 20 || s.Train.Channels != 2 || len(notes) != 1 || !strings.Contains(notes[0], "index") {
		t.Fatalf("pandas' CSV: %v, %d features, notes %q", err, s.Train.Channels, notes)
	}
	s, err = Load("csv", Options{Dir: numeric})
	if err != nil || !slices.Contains(s.Train.Classes, "species") {
		t.Fatalf("a header of numbers, auto: %v (classes %v; the header is taken for a row)", err, s.Train.Classes)
	}
	s, err = Load("csv", Options{Dir: numeric, CSV: CSVOptions{Header: "yes"}})
	if err != nil || s.Train.Len()+s.Test.Len() != 20 || slices.Contains(s.Train.Classes, "species") {
		t.Fatalf("a header of numbers, yes: %v (classes %v)", err, s.Train.Classes)
	}
}

// Regression targets are standardised in float64: targets of 1e9 + x were
// rounded to float32 first (multiples of 64) and lost x.
func TestCSVTargetsKeepTheirPrecision(t *testing.T) {
	var b strings.Builder
	b.WriteString("x,t\n")
	for i := range 200 {
		fmt.Fprintf(&b, "%g,%.3f\n", float64(i)/2, 1e9+float64(i)/2)
	}
	p := filepath.Join(t.TempDir(), "offset.csv")
	writeFile(t, p, []byte(b.String()))
	s, err := Load("csv", Options{Dir: p, CSV: CSVOptions{Task: "regression"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*Dataset{s.Train, s.Test} {
		for i := range d.Len() {
			x := float64(d.Images[i])*d.Std[0] + d.Mean[0]
			if y := d.TargetValue(float64(d.Targets[i])); math.Abs(y-(1e9+x)) > 0.01 {
				t.Fatalf("row %d: target %.3f for x = %.3f, want 1e9 + x", i, y, x)
			}
		}
	}
}
