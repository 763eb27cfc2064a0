package plots

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/trainer"
)

// Fuzz targets for the readers of a run's files and the pictures drawn from
// what they keep. Seeds are records of a real LeNet run
// (testdata/realrun, written by kiln train) and the bad records of
// records_test.go; whatever the bytes, nothing panics, every record kept
// is one the pictures can take, and bad ones are counted.

func realFile(f *testing.F, name string) []byte {
	f.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "realrun", name))
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// seedLines adds a whole real file, each of its lines, and extra lines.
func seedLines(f *testing.F, real []byte, extra ...string) {
	f.Add(real)
	for _, line := range bytes.SplitAfter(real, []byte{'\n'}) {
		if len(line) > 0 {
			f.Add(line)
		}
	}
	for _, e := range extra {
		f.Add([]byte(e))
	}
}

// keepNoPictures makes the pictures drawn during f be encoded but not
// written: the drawing is what is fuzzed, not the disk.
func keepNoPictures(f *testing.F) {
	save := savePicture
	savePicture = func(string, []byte) error { return nil }
	f.Cleanup(func() { savePicture = save })
}

// lineCount is the number of lines parseLines sees.
func lineCount(b []byte) int {
	return bytes.Count(b, []byte{'\n'}) + 1
}

func FuzzParseMetrics(f *testing.F) {
	seedLines(f, realFile(f, trainer.MetricsFile),
		"null\n", "[1]\n", `{"step":"1","split":"val"}`+"\n", `{"step":1,"split":"val","loss":1e999}`+"\n",
		`{"step":1,"split":"val","loss":NaN}`, `{"step":1,"split":"val","loss":null,"lr":null}`+"\n",
		`{"step":9007199254740993,"split":"train","loss":-1e308,"lr":1e308}`+"\n"+`{"step":0,"split":"train","loss":1e308,"lr":-1e308}`+"\n",
		"\n\n{\"step\":1,\"split\":\"x\"}\r\n{\"ste")
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, bad := ParseMetrics(b)
		if len(ms)+bad.Count > lineCount(b) || bad.Torn > lineCount(b) {
			t.Fatalf("%d records and %d bad of %d lines", len(ms), bad.Count, lineCount(b))
		}
		if bad.Count > 0 && !strings.HasPrefix(bad.String(), "metrics.jsonl: skipped ") {
			t.Fatalf("report %q", bad)
		}
		for _, m := range ms {
			if m.Step < 0 || m.Split == "" {
				t.Fatalf("kept %+v", m)
			}
		}
		loss := func(m trainer.MetricsRecord) *float64 { return &m.Loss }
		acc := func(m trainer.MetricsRecord) *float64 { return m.Accuracy }
		for _, get := range []func(trainer.MetricsRecord) *float64{loss, acc} {
			if s := nonEmpty(split(ms, "train", get), split(ms, "val", get)); len(s) > 0 {
				LinesPNG("t", "step", "y", false, s...) // an error (nothing finite) is fine; a panic is not
			}
		}
	})
}

func FuzzParseHistograms(f *testing.F) {
	p := `{"name":"w","kind":"weight","min":-1,"max":1,`
	seedLines(f, realFile(f, trainer.HistogramsFile),
		"null\n", `{"step":1,"params":[null]}`+"\n",
		`{"step":1,"params":[`+p+`"edges":[0,1],"counts":[1,2,3]}]}`+"\n",
		`{"step":1,"params":[`+p+`"edges":[-1e308,1e308],"counts":[5]}]}`+"\n",
		`{"step":1,"params":[`+p+`"edges":[3,3,3],"counts":[0,0]}]}`+"\n",
		`{"step":1,"params":[{"name":"w","kind":"weight","min":5,"max":-5,"edges":[0,1],"counts":[2]}]}`+"\n")
	keepNoPictures(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		hs, bad := ParseHistograms(b)
		if len(hs)+bad.Count > lineCount(b) {
			t.Fatalf("%d records and %d bad of %d lines", len(hs), bad.Count, lineCount(b))
		}
		for _, h := range hs {
			for _, p := range h.Params {
				if len(p.Edges) != len(p.Counts)+1 {
					t.Fatalf("kept %+v", p)
				}
			}
		}
		if len(hs) > 0 {
			histogramsPicture(filepath.Join(t.TempDir(), HistogramsPNG), hs, nil)
		}
	})
}

func FuzzParseVisuals(f *testing.F) {
	f.Add(realFile(f, trainer.VisualsFile))
	doc, err := json.Marshal(visualsDoc())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(doc)
	for _, s := range []string{
		"null", "[]", `{"step":`, `{"samples":{"a":1}}`, `{"attention":[{"shape":[1]}]}`,
		`{"filters":{"shape":[-1,-1,1,1],"data":[1]}}`, `{"confusion":[[1,2],[3]]}`,
		`{"sgu":[{"shape":[4294967296,4294967296],"data":[]}]}`,
		`{"samples":[{"index":0,"label":3,"pred":1,"shape":[3,1,1],"pixels":[0.1,0.5,null]}],"classes":["a"]}`,
		`{"attention":[{"layer":"a","sample":0,"shape":[1,2],"data":[0,1]},{"layer":"b","sample":5,"shape":[2,1],"data":[1,1]}]}`,
	} {
		f.Add([]byte(s))
	}
	keepNoPictures(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		v, bad, err := ParseVisuals(b)
		if err != nil {
			if v != nil {
				t.Fatal("a visuals.json refused, and yet read")
			}
			return
		}
		if bad.Count > 0 && !strings.HasPrefix(bad.String(), "visuals.json: skipped ") {
			t.Fatalf("report %q", bad)
		}
		dir := t.TempDir()
		for _, draw := range []func(string, *trainer.Visuals) error{filtersPicture, samplesPicture, confusionPicture, attentionPicture, sguPicture} {
			draw(filepath.Join(dir, "x.png"), v) // an error is fine; a panic is not
		}
	})
}
