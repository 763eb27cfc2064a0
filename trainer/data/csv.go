package data

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kiln-ml/kiln/internal/userfile"
)

// CSVOptions configure the csv data set.
type CSVOptions struct {
	// Train is the file of training rows. When empty, Options.Dir is used: a
	// file itself, or a directory holding train.csv (and maybe test.csv).
	Train string
	// Test is a file of test rows, laid out as Train. When empty (and no
	// test.csv sits beside train.csv) TestFraction of the training rows are
	// held out, seeded, as the test split.
	Test string
	// TestFraction is the share of rows held out when there is no test file;
	// 0 means 0.2.
	TestFraction float64
	// Target is the target column: a header name, or a 0-based index
	// (negative counts from the end). Empty means the last column.
	Target string
	// Header is "auto" (the default: the first row is a header when one of
	// its fields is not a number where the second row's is), "yes" or "no".
	Header string
	// Task is "auto" (the default; see the package documentation),
	// "classification" or "regression".
	Task string
	// Comma is the field separator; 0 means ','.
	Comma rune
	// Note receives what the loader says about the file (an index column
	// left out); nil drops it.
	Note func(msg string) `json:"-"`
}

// maxAutoClasses is the most distinct integer targets that "auto" still
// takes for classes.
const maxAutoClasses = 32

// csvTable is a parsed CSV file: numeric features and raw target strings.
type csvTable struct {
	path      string
	header    []string // nil without a header
	numCols   int
	targetCol int
	features  []float64 // rows × (numCols-1), row-major
	targets   []string
	lines     []int // line number of each row, for errors
}

func (t *csvTable) rows() int { return len(t.targets) }

// featureNames returns the feature columns' names (header or column numbers).
func (t *csvTable) featureName(j int) string {
	col := j
	if j >= t.targetCol {
		col++
	}
	if t.header != nil {
		return fmt.Sprintf("column %d (%q)", col+1, t.header[col])
	}
	return fmt.Sprintf("column %d", col+1)
}

func checkCSVOptions(o CSVOptions) error {
	switch o.Header {
	case "", "auto", "yes", "no":
	default:
		return fmt.Errorf("data: csv: header %q must be auto, yes or no", o.Header)
	}
	switch o.Task {
	case "", "auto", "classification", "regression":
	default:
		return fmt.Errorf("data: csv: task %q must be auto, classification or regression", o.Task)
	}
	if o.TestFraction < 0 || o.TestFraction >= 1 {
		return fmt.Errorf("data: csv: test fraction %v is not in [0, 1)", o.TestFraction)
	}
	if o.Comma == '"' || o.Comma == '\r' || o.Comma == '\n' || o.Comma == 0xFFFD {
		return fmt.Errorf("data: csv: %q cannot separate fields", o.Comma)
	}
	return nil
}

// notCSVText refuses what is not CSV text, by its first bytes, with what it
// is: a gzip file read as CSV said `bare " in non-quoted-field`, UTF-16 text
// that its first name was not a number.
func notCSVText(path string, raw []byte) error {
	switch {
	case bytes.HasPrefix(raw, []byte{0x1f, 0x8b}):
		return fileErr(path, "a gzip file, not CSV text: gunzip it first")
	case bytes.HasPrefix(raw, []byte{0xff, 0xfe}) || bytes.HasPrefix(raw, []byte{0xfe, 0xff}):
		return fileErr(path, "UTF-16 text (a spreadsheet's \"Unicode text\"?): save it as CSV in UTF-8")
	case bytes.HasPrefix(raw, []byte("PK\x03\x04")):
		return fileErr(path, "a zip file (an .xlsx workbook?), not CSV text: save it as CSV")
	}
	return nil
}

// parseNumber parses a finite number; problem words why not.
func parseNumber(s string) (v float64, problem string) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, "is empty (missing value)"
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Sprintf("%q is not a number", s)
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Sprintf("%q is not a finite number", s)
	}
	if math.Abs(v) > math.MaxFloat32 {
		return 0, fmt.Sprintf("%q is beyond float32's range", s)
	}
	return v, ""
}

func isNumber(s string) bool { _, p := parseNumber(s); return p == "" }

// parseCSV reads a CSV file's bytes. Errors are *FileError naming path. A
// test file is parsed with like, the training table, whose layout it must
// share. Each row becomes numbers as it is read: holding every field as a
// string first (a slice header and a string per field) made the parse of a
// wide file, at five times its size, the peak of a whole run.
func parseCSV(path string, raw []byte, o CSVOptions, like *csvTable) (*csvTable, error) {
	if err := notCSVText(path, raw); err != nil {
		return nil, err
	}
	if line, _, _ := bytes.Cut(raw, []byte("\n")); o.Comma == 0 && bytes.IndexByte(line, ',') < 0 && bytes.IndexByte(line, ';') >= 0 {
		return nil, fileErr(path, "line 1 has no ',' but has ';': fields separated by ';', as a spreadsheet with a decimal comma writes them; export it with ',' between fields and '.' in numbers")
	}
	raw = bytes.TrimPrefix(raw, []byte("\ufeff")) // Excel's "CSV UTF-8" begins with a byte-order mark
	if bytes.IndexByte(raw, '\n') < 0 && bytes.IndexByte(raw, '\r') >= 0 {
		// Lines ended by CR alone (classic Mac OS, some Excel exports), which
		// Python's csv module and pandas read as lines: encoding/csv would
		// see one line.
		raw = bytes.ReplaceAll(raw, []byte("\r"), []byte("\n"))
	}
	r := csv.NewReader(bytes.NewReader(raw))
	if o.Comma != 0 {
		r.Comma = o.Comma
	}
	r.TrimLeadingSpace = true
	r.ReuseRecord = true
	first, line0, err := nextRecord(r, path)
	if err == io.EOF {
		return nil, fileErr(path, "no rows")
	}
	if err != nil {
		return nil, err
	}
	first = slices.Clone(first)
	second, line1, err := nextRecord(r, path)
	if err != nil && err != io.EOF {
		return nil, err
	}
	second = slices.Clone(second)
	t := &csvTable{path: path, numCols: len(first)}
	if t.numCols < 2 {
		return nil, fileErr(path, "line %d: %d column; want at least one feature column and a target column", line0, t.numCols)
	}
	header := hasHeader(o.Header, first, second)
	index := header && isIndexHeader(first)
	if index {
		first, t.numCols = first[1:], t.numCols-1
		if second != nil {
			second = second[1:]
		}
		if o.Note != nil {
			o.Note(fmt.Sprintf("%s: its first column has no name (an index, as pandas' to_csv writes it): left out", path))
		}
	}
	if like != nil && t.numCols != like.numCols {
		return nil, fileErr(path, "has %d columns but %s has %d", t.numCols, like.path, like.numCols)
	}
	if header {
		t.header = make([]string, t.numCols)
		for j, h := range first {
			t.header[j] = strings.TrimSpace(h)
		}
	}
	if like != nil && header && like.header != nil && !slices.Equal(t.header, like.header) {
		return nil, fileErr(path, "has the columns %q but %s has %q: the files' columns are matched by position, so they must be in the same order",
			t.header, like.path, like.header)
	}
	if t.targetCol, err = targetColumn(o.Target, t.header, t.numCols); err != nil {
		return nil, fileErr(path, "%v", err)
	}
	// Room for every row: at most one per line, and each row takes at least
	// numCols bytes (its separators and newline).
	rows := min(bytes.Count(raw, []byte{'\n'})+1, len(raw)/t.numCols+1)
	t.features = make([]float64, 0, rows*(t.numCols-1))
	t.targets, t.lines = make([]string, 0, rows), make([]int, 0, rows)
	if !header {
		if err := t.add(first, line0); err != nil {
			return nil, err
		}
	}
	for rec, line := second, line1; rec != nil; {
		if err := t.add(rec, line); err != nil {
			return nil, err
		}
		if rec, line, err = nextRecord(r, path); err != nil && err != io.EOF {
			return nil, err
		}
		if index && len(rec) > 0 {
			rec = rec[1:]
		}
	}
	if t.rows() == 0 {
		return nil, fileErr(path, "a header and no data rows")
	}
	return t, nil
}

// isIndexHeader reports a header whose first name is empty, heading an
// index column (pandas' to_csv, R's write.csv): row numbers, not a feature
// (in a sorted file they give the label away). The loader drops it, as
// read_csv(index_col=0) does.
func isIndexHeader(header []string) bool {
	return len(header) > 2 && strings.TrimSpace(header[0]) == ""
}

// nextRecord reads a record and the line it starts on; io.EOF at the end.
func nextRecord(r *csv.Reader, path string) ([]string, int, error) {
	rec, err := r.Read()
	if err == io.EOF {
		return nil, 0, io.EOF
	}
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return nil, 0, fileErr(path, "line %d: %v", pe.Line, pe.Err)
		}
		return nil, 0, fileErr(path, "%v", err)
	}
	line, _ := r.FieldPos(0)
	return rec, line, nil
}

// hasHeader decides whether the first row is a header: as told, or (auto)
// when every field of it is a name (not empty, not a missing value) and one
// is a name where the second row has a number, or, in a one-row file, when
// every field is a name. A first data row with a missing value is data, and
// its missing value an error, not a header that drops the row; but the
// first field may be empty, as pandas' to_csv writes its index's.
func hasHeader(mode string, first, second []string) bool {
	switch mode {
	case "yes":
		return true
	case "no":
		return false
	}
	names := first
	if len(first) > 1 && strings.TrimSpace(first[0]) == "" {
		names = first[1:]
	}
	if !slices.ContainsFunc(names, isName) || slices.ContainsFunc(names, func(s string) bool { return strings.TrimSpace(s) == "" }) {
		return false
	}
	if second == nil {
		return !slices.ContainsFunc(first, isNumber)
	}
	for j := range first {
		if isName(first[j]) && isNumber(second[j]) {
			return true
		}
	}
	return false
}

// isName: a header's field, text that is neither a number nor a way of
// writing a missing or non-finite one.
func isName(s string) bool {
	s = strings.ToLower(strings.TrimSpace(s))
	switch strings.TrimLeft(s, "+-") {
	case "", "nan", "inf", "infinity", "na", "n/a", "null", "none", "?":
		return false
	}
	return !isNumber(s)
}

// add appends a data row: its features as numbers, its target as text (a
// copy: a slice of the row would keep the whole row's text alive).
func (t *csvTable) add(rec []string, line int) error {
	target := ""
	k := 0
	for j, s := range rec {
		if j == t.targetCol {
			target = strings.Clone(strings.TrimSpace(s))
			if v, problem := parseNumber(s); problem == "" {
				target = strconv.FormatFloat(v+0, 'f', -1, 64) // "1.0" and "1" are one class; so are -0 and 0
			}
			continue
		}
		v, problem := parseNumber(s)
		if problem != "" {
			return fileErr(t.path, "line %d, %s: %s", line, t.featureName(k), problem)
		}
		t.features = append(t.features, v)
		k++
	}
	if target == "" {
		return fileErr(t.path, "line %d, target column %d: is empty (missing value)", line, t.targetCol+1)
	}
	t.targets = append(t.targets, target)
	t.lines = append(t.lines, line)
	return nil
}

// missingTargets refuses a target column of numbers with a missing-value
// marker among them (NaN, NA, ?, null, inf), naming its line: among integer
// targets it became a class, a bogus output. In a column of names (cat,
// dog, none) the markers are names too.
func missingTargets(tables ...*csvTable) error {
	numbers := 0
	for _, t := range tables {
		for _, v := range t.targetsOrNone() {
			if isName(v) {
				return nil
			}
			if isNumber(v) {
				numbers++
			}
		}
	}
	for _, t := range tables {
		for i, v := range t.targetsOrNone() {
			if numbers > 0 && !isNumber(v) {
				return fileErr(t.path, "line %d, target column %d: %q is a missing or non-finite value", t.lines[i], t.targetCol+1, v)
			}
		}
	}
	return nil
}

// targetsOrNone is t's targets (none for a nil t).
func (t *csvTable) targetsOrNone() []string {
	if t == nil {
		return nil
	}
	return t.targets
}

// targetColumn resolves CSVOptions.Target against a header (nil if none).
func targetColumn(target string, header []string, n int) (int, error) {
	target = strings.TrimSpace(target)
	if target == "" {
		return n - 1, nil
	}
	if i, err := strconv.Atoi(target); err == nil {
		if i < 0 {
			i += n
		}
		if i < 0 || i >= n {
			return 0, fmt.Errorf("target column %s is out of range: the file has %d columns", target, n)
		}
		return i, nil
	}
	if header == nil {
		return 0, fmt.Errorf("target column %q is a name but the file has no header row", target)
	}
	for j, h := range header {
		if h == target {
			return j, nil
		}
	}
	return 0, fmt.Errorf("no column named %q in the header %q", target, header)
}

// csvDatasets turns parsed training (and optional test) tables into data sets.
func csvDatasets(train, test *csvTable, o CSVOptions, seed uint64) (tr, te *Dataset, err error) {
	if err := missingTargets(train, test); err != nil {
		return nil, nil, err
	}
	if test != nil && test.numCols != train.numCols {
		return nil, nil, fileErr(test.path, "has %d columns but %s has %d", test.numCols, train.path, train.numCols)
	}
	// The file's classes and task, before a test split is held out of it:
	// from the kept rows alone a rare class came and went with the seed
	// (a class only the held-out rows had was refused as unseen).
	whole := train
	if test == nil {
		if train, test, err = holdOutTest(train, o.TestFraction, seed); err != nil {
			return nil, nil, err
		}
	}
	f := train.numCols - 1
	mean, std := columnStats(train.features, f)
	d := &Dataset{
		Name: "csv", Source: train.path,
		Channels: f, Height: 1, Width: 1,
		Mean: mean, Std: std,
	}
	task := o.Task
	if task == "" || task == "auto" {
		task = guessTask(whole.targets)
	}
	tr, te = d.meta(), d.meta()
	if tr.Images, err = standardize(train, mean, std); err != nil {
		return nil, nil, err
	}
	if te.Images, err = standardize(test, mean, std); err != nil {
		return nil, nil, err
	}
	if test.path != train.path {
		te.Source = test.path
	}
	if task == "regression" {
		if err := regressionTargets(tr, te, train, test); err != nil {
			return nil, nil, err
		}
		return tr, te, nil
	}
	classes, index, err := classList(whole)
	if err != nil {
		return nil, nil, err
	}
	tr.Classes, te.Classes = classes, slices.Clone(classes)
	if tr.Labels, err = labelsOf(train, index, nil); err != nil {
		return nil, nil, err
	}
	if te.Labels, err = labelsOf(test, index, train); err != nil {
		return nil, nil, err
	}
	return tr, te, nil
}

// holdOutTest splits a file without a test.csv: frac of its rows (0: 0.2),
// drawn with seed, are the test split.
func holdOutTest(t *csvTable, frac float64, seed uint64) (train, test *csvTable, err error) {
	if frac == 0 {
		frac = 0.2
	}
	n := t.rows()
	if n < 2 {
		return nil, nil, fileErr(t.path, "%d data row: too few to hold out a test split", n)
	}
	k := min(n-1, max(1, int(math.Round(frac*float64(n)))))
	perm := make([]int, n)
	s := newStream(seed, domainCSVTest, uint64(n), 0)
	s.permute(perm)
	held, kept := perm[:k], perm[k:]
	slices.Sort(held)
	slices.Sort(kept)
	return t.take(kept), t.take(held), nil
}

// regressionTargets stores the tables' targets in tr and te standardised
// by the training rows' mean and deviation, in float64 until stored:
// rounded to float32 first, targets of 1e9 + x kept multiples of 64 and
// lost x. A target beyond float32 once standardised is an error naming it.
func regressionTargets(tr, te *Dataset, train, test *csvTable) error {
	tr.Task, te.Task = Regression, Regression
	trainY, err := numericTargets(train)
	if err != nil {
		return err
	}
	testY, err := numericTargets(test)
	if err != nil {
		return err
	}
	m, sd := columnStats(trainY, 1)
	shift, scale := m[0], sd[0]
	for _, p := range []struct {
		ds *Dataset
		t  *csvTable
		y  []float64
	}{{tr, train, trainY}, {te, test, testY}} {
		p.ds.TargetShift, p.ds.TargetScale = shift, scale
		p.ds.TargetName = "target"
		if train.header != nil {
			p.ds.TargetName = train.header[train.targetCol]
		}
		p.ds.Targets = make([]float32, len(p.y))
		for i, v := range p.y {
			z := (v - shift) / scale
			if math.Abs(z) > math.MaxFloat32 {
				return fileErr(p.t.path, "line %d, target column %d: %v is %.3g standard deviations from the training rows' mean, beyond float32",
					p.t.lines[i], train.targetCol+1, v, z)
			}
			p.ds.Targets[i] = float32(z)
		}
	}
	return nil
}

// take returns the table restricted to the given rows.
func (t *csvTable) take(rows []int) *csvTable {
	f := t.numCols - 1
	out := &csvTable{path: t.path, header: t.header, numCols: t.numCols, targetCol: t.targetCol,
		features: make([]float64, len(rows)*f), targets: make([]string, len(rows)), lines: make([]int, len(rows))}
	for j, i := range rows {
		copy(out.features[j*f:(j+1)*f], t.features[i*f:(i+1)*f])
		out.targets[j] = t.targets[i]
		out.lines[j] = t.lines[i]
	}
	return out
}

// columnStats returns each column's mean and standard deviation (1 for a
// constant column).
func columnStats(x []float64, f int) (mean, std []float64) {
	mean, std = make([]float64, f), make([]float64, f)
	n := len(x) / f
	for i := 0; i < n; i++ {
		for j := 0; j < f; j++ {
			mean[j] += x[i*f+j]
		}
	}
	for j := range mean {
		mean[j] /= float64(n)
	}
	for i := 0; i < n; i++ {
		for j := 0; j < f; j++ {
			d := x[i*f+j] - mean[j]
			std[j] += d * d
		}
	}
	for j := range std {
		std[j] = math.Sqrt(std[j] / float64(n))
		if !(std[j] > 0) || math.IsInf(std[j], 0) {
			std[j] = 1
		}
	}
	return mean, std
}

// standardize is t's features as (x − mean) / std in float32; a value that
// float32 cannot hold then (a test row far outside the training rows'
// spread) is an error naming its line and column: it went in as infinite,
// and the NaN loss was blamed on the weights.
func standardize(t *csvTable, mean, std []float64) ([]float32, error) {
	f := len(mean)
	out := make([]float32, len(t.features))
	for i, v := range t.features {
		z := (v - mean[i%f]) / std[i%f]
		if math.Abs(z) > math.MaxFloat32 {
			return nil, fileErr(t.path, "line %d, %s: %v is %.3g standard deviations from the training rows' mean, beyond float32",
				t.lines[i/f], t.featureName(i%f), v, z)
		}
		out[i] = float32(z)
	}
	return out, nil
}

func guessTask(targets []string) string {
	distinct := map[float64]bool{}
	for _, s := range targets {
		v, problem := parseNumber(s)
		if problem != "" {
			return "classification" // text labels
		}
		if v != math.Trunc(v) {
			return "regression"
		}
		distinct[v] = true
	}
	if len(distinct) <= maxAutoClasses {
		return "classification"
	}
	return "regression"
}

func numericTargets(t *csvTable) ([]float64, error) {
	out := make([]float64, t.rows())
	for i, s := range t.targets {
		v, problem := parseNumber(s)
		if problem != "" {
			return nil, fileErr(t.path, "line %d, target column %d: %s (a regression target must be a number)", t.lines[i], t.targetCol+1, problem)
		}
		out[i] = v
	}
	return out, nil
}

// classList returns the training targets' distinct values, sorted
// (numerically when all are numbers), and a map from value to class index.
func classList(t *csvTable) ([]string, map[string]int32, error) {
	seen := map[string]bool{}
	var classes []string
	numeric := true
	for _, s := range t.targets {
		if !seen[s] {
			seen[s] = true
			classes = append(classes, s)
			numeric = numeric && isNumber(s)
		}
	}
	if numeric {
		slices.SortFunc(classes, func(a, b string) int {
			x, _ := parseNumber(a)
			y, _ := parseNumber(b)
			if x < y {
				return -1
			}
			if x > y {
				return 1
			}
			return strings.Compare(a, b)
		})
	} else {
		slices.Sort(classes)
	}
	index := make(map[string]int32, len(classes))
	for i, c := range classes {
		index[c] = int32(i)
	}
	return classes, index, nil
}

func labelsOf(t *csvTable, index map[string]int32, train *csvTable) ([]int32, error) {
	out := make([]int32, t.rows())
	for i, s := range t.targets {
		l, ok := index[s]
		if !ok {
			return nil, fileErr(t.path, "line %d: class %q does not occur in the training rows of %s", t.lines[i], s, train.path)
		}
		out[i] = l
	}
	return out, nil
}

// maxCSVBytes bounds a CSV file, checked before it is read: the parsed
// table takes several times the text.
const maxCSVBytes = 1 << 32

// csvFiles resolves the training and test files.
func csvFiles(o Options) (train, test string, err error) {
	if o.CSV.Train != "" {
		return o.CSV.Train, o.CSV.Test, nil
	}
	if o.Dir == "" {
		return "", "", errors.New("data: csv needs a file: pass --data-dir FILE.csv, or a directory holding train.csv (and optionally test.csv)")
	}
	st, err := os.Stat(o.Dir)
	if err != nil {
		return "", "", ioErr(o.Dir, err)
	}
	if !st.IsDir() {
		return o.Dir, o.CSV.Test, nil
	}
	train = filepath.Join(o.Dir, "train.csv")
	if _, err := os.Stat(train); err != nil {
		return "", "", fileErr(o.Dir, "no train.csv in this directory")
	}
	test = o.CSV.Test
	if p := filepath.Join(o.Dir, "test.csv"); test == "" {
		if _, err := os.Stat(p); err == nil {
			test = p
		}
	}
	return train, test, nil
}

func loadCSV(o Options) (train, test *Dataset, err error) {
	if err := checkCSVOptions(o.CSV); err != nil {
		return nil, nil, err
	}
	trainPath, testPath, err := csvFiles(o)
	if err != nil {
		return nil, nil, err
	}
	read := func(p string, like *csvTable) (*csvTable, error) {
		raw, err := userfile.ReadFile(p, maxCSVBytes)
		if err != nil {
			return nil, ioErr(p, err)
		}
		return parseCSV(p, raw, o.CSV, like)
	}
	tr, err := read(trainPath, nil)
	if err != nil {
		return nil, nil, err
	}
	var te *csvTable
	if testPath != "" {
		o.CSV.Target = strconv.Itoa(tr.targetCol) // the training file's column, header or not
		if te, err = read(testPath, tr); err != nil {
			return nil, nil, err
		}
	}
	return csvDatasets(tr, te, o.CSV, o.Seed)
}
