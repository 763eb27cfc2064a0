package plots

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/kiln-ml/kiln/trainer"
)

// Reading a run's files: a run directory is read while it is written, copied
// between machines and edited by hand, so one bad record (null, a stray
// line, a wrong type, a number out of range, a line cut short) must not
// cost the whole file. Each reader keeps the good records, skips the bad
// ones and says which in a Bad; the page of `kiln board` applies the same
// rules (board/assets/board.js).

// Bad says which records of a file a reader skipped.
type Bad struct {
	File  string   // the file's name
	Count int      // bad records skipped
	Lines []int    // JSON-lines files: the first few bad lines (1-based)
	Parts []string // visuals.json: the first few bad parts, e.g. "samples[3]"
	Torn  int      // a last line with no newline that is not a whole record: its line number
}

// maxListed is how many bad lines or parts a report names before "and N more".
const maxListed = 10

func (b *Bad) line(n int) {
	b.Count++
	if len(b.Lines) < maxListed {
		b.Lines = append(b.Lines, n)
	}
}

func (b *Bad) part(p string) {
	b.Count++
	if len(b.Parts) < maxListed {
		b.Parts = append(b.Parts, p)
	}
}

// String is the report's line, "metrics.jsonl: skipped 1 bad record
// (line 7)", or "" when nothing was skipped.
func (b Bad) String() string {
	var parts []string
	if b.Count > 0 {
		where := b.Parts
		what := ""
		if b.Lines != nil {
			what = "line "
			if b.Count > 1 {
				what = "lines "
			}
			for _, n := range b.Lines {
				where = append(where, strconv.Itoa(n))
			}
		}
		list := what + strings.Join(where, ", ")
		if more := b.Count - len(where); more > 0 {
			list += fmt.Sprintf(" and %d more", more)
		}
		parts = append(parts, fmt.Sprintf("%d bad %s (%s)", b.Count, plural(b.Count, "record"), list))
	}
	if b.Torn > 0 {
		parts = append(parts, fmt.Sprintf("the last line (%d) cut short", b.Torn))
	}
	if len(parts) == 0 {
		return ""
	}
	return b.File + ": skipped " + strings.Join(parts, "; ")
}

func plural(n int, s string) string {
	if n == 1 {
		return s
	}
	return s + "s"
}

// parseLines parses each line of a JSON-lines file. A last line without its
// newline is kept when it is a whole record (a writer that does not end the
// file with one) and reported as cut short otherwise: still being written.
func parseLines[T any](name string, b []byte, parse func([]byte) (T, bool)) ([]T, Bad) {
	var out []T
	bad := Bad{File: name, Lines: []int{}}
	for n := 1; len(b) > 0; n++ {
		line, rest, complete := bytes.Cut(b, []byte{'\n'})
		b = rest
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		r, ok := parse(line)
		switch {
		case ok:
			out = append(out, r)
		case !complete:
			bad.Torn = n
		default:
			bad.line(n)
		}
	}
	return out, bad
}

// isObject reports whether a JSON text is an object: json.Unmarshal takes
// null into a struct without a word, and a record must be an object.
func isObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

// metricsWire is a metrics.jsonl record as read: pointers tell a missing
// or null field from a zero.
type metricsWire struct {
	Time     *string  `json:"time"`
	Step     *int     `json:"step"`
	Epoch    *float64 `json:"epoch"`
	Split    *string  `json:"split"`
	Loss     *float64 `json:"loss"`
	Accuracy *float64 `json:"accuracy"`
	Top5     *float64 `json:"top5"`
	RMSE     *float64 `json:"rmse"`
	MAE      *float64 `json:"mae"`
	R2       *float64 `json:"r2"`
	LR       *float64 `json:"lr"`
	Wall     *float64 `json:"wall_seconds"`
	ImagesPS *float64 `json:"images_per_sec"`
}

// parseMetric reads one record: an object with a step (an integer ≥ 0) and
// a split (a string), its other fields numbers or null. A null or missing
// loss, lr or wall time reads as NaN, which the charts leave out.
func parseMetric(line []byte) (trainer.MetricsRecord, bool) {
	var w metricsWire
	if !isObject(line) || json.Unmarshal(line, &w) != nil || w.Step == nil || *w.Step < 0 || w.Split == nil || *w.Split == "" {
		return trainer.MetricsRecord{}, false
	}
	orNaN := func(p *float64) float64 {
		if p == nil {
			return math.NaN()
		}
		return *p
	}
	m := trainer.MetricsRecord{Step: *w.Step, Epoch: orNaN(w.Epoch), Split: *w.Split, Loss: orNaN(w.Loss),
		Accuracy: w.Accuracy, Top5: w.Top5, RMSE: w.RMSE, MAE: w.MAE, R2: w.R2, LR: orNaN(w.LR), Wall: orNaN(w.Wall)}
	if w.Time != nil {
		m.Time = *w.Time
	}
	if w.ImagesPS != nil {
		m.ImagesPS = *w.ImagesPS
	}
	return m, true
}

// ParseMetrics reads the text of a metrics.jsonl, skipping bad records.
func ParseMetrics(b []byte) ([]trainer.MetricsRecord, Bad) {
	return parseLines(trainer.MetricsFile, b, parseMetric)
}

// ReadMetrics reads metrics.jsonl, skipping bad records; the error is the
// file's (missing, unreadable).
func ReadMetrics(path string) ([]trainer.MetricsRecord, Bad, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, Bad{}, err
	}
	ms, bad := ParseMetrics(b)
	return ms, bad, nil
}

type histogramWire struct {
	Step   *int          `json:"step"`
	Epoch  *float64      `json:"epoch"`
	Params *[]*paramWire `json:"params"`
}

type paramWire struct {
	Name   *string    `json:"name"`
	Kind   *string    `json:"kind"`
	Min    *float64   `json:"min"`
	Max    *float64   `json:"max"`
	Edges  []*float64 `json:"edges"`
	Counts []*int     `json:"counts"`
}

// parseHistogram reads one record: a step and a list of parameters, each
// with a name, a kind, min and max, at least two edges in increasing order
// and one count (an integer ≥ 0) between each two. One bad parameter makes
// the record bad: a histogram line is written whole or not at all.
func parseHistogram(line []byte) (trainer.HistogramRecord, bool) {
	var w histogramWire
	if !isObject(line) || json.Unmarshal(line, &w) != nil || w.Step == nil || w.Params == nil {
		return trainer.HistogramRecord{}, false
	}
	r := trainer.HistogramRecord{Step: *w.Step, Params: make([]trainer.ParamHistogram, 0, len(*w.Params))}
	if w.Epoch != nil {
		r.Epoch = *w.Epoch
	}
	for _, p := range *w.Params {
		h, ok := p.histogram()
		if !ok {
			return trainer.HistogramRecord{}, false
		}
		r.Params = append(r.Params, h)
	}
	return r, true
}

func (p *paramWire) histogram() (trainer.ParamHistogram, bool) {
	if p == nil || p.Name == nil || *p.Name == "" || p.Kind == nil || p.Min == nil || p.Max == nil ||
		len(p.Edges) < 2 || len(p.Counts) != len(p.Edges)-1 {
		return trainer.ParamHistogram{}, false
	}
	h := trainer.ParamHistogram{Name: *p.Name, Kind: *p.Kind, Min: *p.Min, Max: *p.Max,
		Edges: make([]float64, len(p.Edges)), Counts: make([]int, len(p.Counts))}
	for i, e := range p.Edges {
		if e == nil || (i > 0 && *e < h.Edges[i-1]) {
			return trainer.ParamHistogram{}, false
		}
		h.Edges[i] = *e
	}
	for i, c := range p.Counts {
		if c == nil || *c < 0 {
			return trainer.ParamHistogram{}, false
		}
		h.Counts[i] = *c
	}
	return h, true
}

// ParseHistograms reads the text of a histograms.jsonl, skipping bad records.
func ParseHistograms(b []byte) ([]trainer.HistogramRecord, Bad) {
	return parseLines(trainer.HistogramsFile, b, parseHistogram)
}

// ReadHistograms reads histograms.jsonl, skipping bad records; the error is
// the file's (missing, unreadable).
func ReadHistograms(path string) ([]trainer.HistogramRecord, Bad, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, Bad{}, err
	}
	hs, bad := ParseHistograms(b)
	return hs, bad, nil
}

// visualsWire holds each part of visuals.json undecoded, so that one bad
// part (or one bad sample) is skipped alone.
type visualsWire struct {
	Step      json.RawMessage `json:"step"`
	Classes   json.RawMessage `json:"classes"`
	Filters   json.RawMessage `json:"filters"`
	Samples   json.RawMessage `json:"samples"`
	Confusion json.RawMessage `json:"confusion"`
	Attention json.RawMessage `json:"attention"`
	SGU       json.RawMessage `json:"sgu"`
}

// errNotObject is visuals.json when it is not a JSON object at all.
var errNotObject = errors.New("not a JSON object")

// ParseVisuals reads the text of a visuals.json, skipping its bad parts: a
// filters, confusion or classes that is not what the contract says, and
// each bad sample, attention map or SGU matrix. The error is a text that is
// not a JSON object: nothing in it can be drawn.
func ParseVisuals(b []byte) (*trainer.Visuals, Bad, error) {
	bad := Bad{File: trainer.VisualsFile, Parts: []string{}}
	var w visualsWire
	if !isObject(b) {
		return nil, bad, fmt.Errorf("%s: %w", trainer.VisualsFile, errNotObject)
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, bad, fmt.Errorf("%s: %w", trainer.VisualsFile, err)
	}
	v := &trainer.Visuals{}
	decodePart(&bad, "step", w.Step, &v.Step, nil)
	decodePart(&bad, "classes", w.Classes, &v.Classes, nil)
	decodePart(&bad, "filters", w.Filters, &v.Filters, func() bool { return filtersFit(v.Filters) })
	decodePart(&bad, "confusion", w.Confusion, &v.Confusion, func() bool { return square(v.Confusion) })
	var first []int // the first good sample's shape: the picture is a grid of equal cells
	v.Samples = decodeList(&bad, "samples", w.Samples, 3, func(s trainer.VisualSample) ([]int, int) { return s.Shape, len(s.Pixels) },
		func(s trainer.VisualSample) bool {
			if s.Label != nil && *s.Label < 0 {
				return false
			}
			if first == nil {
				first = s.Shape
			}
			return slices.Equal(s.Shape, first)
		})
	v.Attention = decodeList(&bad, "attention", w.Attention, 2, func(a trainer.AttentionMap) ([]int, int) { return a.Shape, len(a.Data) }, nil)
	v.SGU = decodeList(&bad, "sgu", w.SGU, 2, func(s trainer.SpatialWeight) ([]int, int) { return s.Shape, len(s.Data) }, nil)
	return v, bad, nil
}

// ReadVisuals reads visuals.json, skipping its bad parts (ParseVisuals).
func ReadVisuals(path string) (*trainer.Visuals, Bad, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, Bad{}, err
	}
	return ParseVisuals(b)
}

// absent is a part left out, or written as null.
func absent(raw json.RawMessage) bool {
	return len(raw) == 0 || string(bytes.TrimSpace(raw)) == "null"
}

// decodePart decodes one optional part into *into; a part that does not
// decode, or that ok refuses, is counted bad and left at its zero value.
func decodePart[T any](bad *Bad, name string, raw json.RawMessage, into *T, ok func() bool) {
	if absent(raw) {
		return
	}
	if json.Unmarshal(raw, into) != nil || (ok != nil && !ok()) {
		var zero T
		*into = zero
		bad.part(name)
	}
}

// decodeList decodes a list part element by element: an element that is
// not an object, does not decode, whose data does not fill its shape (of
// rank dimensions) or that ok refuses is counted bad and left out.
func decodeList[T any](bad *Bad, name string, raw json.RawMessage, rank int, shape func(T) ([]int, int), ok func(T) bool) []T {
	if absent(raw) {
		return nil
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		bad.part(name)
		return nil
	}
	out := make([]T, 0, len(items))
	for i, item := range items {
		var x T
		if isObject(item) && json.Unmarshal(item, &x) == nil {
			if dims, n := shape(x); shapeFits(dims, rank, n) && (ok == nil || ok(x)) {
				out = append(out, x)
				continue
			}
		}
		bad.part(fmt.Sprintf("%s[%d]", name, i))
	}
	return out
}

// shapeFits reports whether shape has rank dimensions, each at least 1, that
// hold exactly n values. Each dimension is checked against n before it is
// multiplied in, so the product cannot overflow.
func shapeFits(shape []int, rank, n int) bool {
	if len(shape) != rank {
		return false
	}
	p := 1
	for _, d := range shape {
		if d < 1 || d > n {
			return false
		}
		p *= d
		if p > n {
			return false
		}
	}
	return p == n
}

func filtersFit(f *trainer.FilterWeights) bool {
	return f != nil && shapeFits(f.Shape, 4, len(f.Data))
}

// square reports whether m is a square matrix of counts.
func square(m [][]int) bool {
	for _, row := range m {
		if len(row) != len(m) {
			return false
		}
		for _, n := range row {
			if n < 0 {
				return false
			}
		}
	}
	return true
}
