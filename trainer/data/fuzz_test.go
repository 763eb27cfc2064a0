package data

import (
	"math"
	"testing"
)

// The fuzz targets feed arbitrary bytes to the parsers: they must return a
// data set that validates or an error, never panic. Seed corpora live in
// testdata/fuzz/<target>/; run e.g. `go test -fuzz FuzzIDX ./trainer/data/`.

func FuzzIDX(f *testing.F) {
	img, lbl := synthIDX(2, trainMarker)
	f.Add(img)
	f.Add(lbl)
	f.Add(gzipBytes(lbl))
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, ndims := range []int{1, 3} {
			dims, payload, err := decodeIDX(raw, ndims)
			if err != nil {
				continue
			}
			n := 1
			for _, d := range dims {
				n *= d
			}
			if len(dims) != ndims || len(payload) != n {
				t.Fatalf("dims %v with %d payload bytes", dims, len(payload))
			}
			if ndims == 3 && dims[1] == idxSide && dims[2] == idxSide {
				d := idxDataset(mnistSpec, &idxPart{pixels: payload, labels: make([]byte, dims[0]), n: dims[0]})
				if err := d.Validate(); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

func FuzzCIFAR(f *testing.F) {
	f.Add(cifarBytes(0, 1))
	f.Add(cifarBytes(1, 2)[:100])
	f.Fuzz(func(t *testing.T, raw []byte) {
		n, err := decodeCIFAR(raw)
		if err != nil {
			return
		}
		d := cifarDataset([][]byte{raw}, n, cifarClasses)
		if err := d.Validate(); err != nil {
			t.Fatal(err)
		}
	})
}

func FuzzCSV(f *testing.F) {
	f.Add([]byte(irisLike), "", uint8(0))
	f.Add([]byte("1,2,3\n4,5,6\n7,8,9\n"), "0", uint8(1))
	f.Add([]byte("a;b\n1;2.5\n2;3.5\n3;1e3\n"), "b", uint8(2))
	f.Fuzz(func(t *testing.T, raw []byte, target string, mode uint8) {
		o := CSVOptions{Target: target}
		o.Header = []string{"auto", "yes", "no"}[mode%3]
		o.Task = []string{"auto", "classification", "regression"}[mode/3%3]
		if mode >= 128 {
			o.Comma = ';'
		}
		tab, err := parseCSV("fuzz.csv", raw, o, nil)
		if err != nil {
			return
		}
		tr, te, err := csvDatasets(tab, nil, o, uint64(mode))
		if err != nil {
			return
		}
		for _, d := range []*Dataset{tr, te} {
			if err := d.Validate(); err != nil {
				t.Fatal(err)
			}
			if d.Len() == 0 {
				t.Fatal("empty split")
			}
			for _, v := range append(append([]float32(nil), d.Images...), d.Targets...) {
				if math.IsInf(float64(v), 0) || v != v {
					t.Fatalf("non-finite value")
				}
			}
		}
	})
}

// TestCSVFiniteValues: whatever parses gives finite float32 values.
func TestCSVFiniteValues(t *testing.T) {
	tab, err := parseCSV("f.csv", []byte("3e38,2,3e38\n-3e38,3,-3e38\n1,1,1\n"), CSVOptions{Task: "regression"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tr, te, err := csvDatasets(tab, nil, CSVOptions{Task: "regression"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []*Dataset{tr, te} {
		for _, v := range append(append([]float32(nil), d.Images...), d.Targets...) {
			if math.IsInf(float64(v), 0) || v != v {
				t.Fatalf("non-finite value in %v / %v", d.Images, d.Targets)
			}
		}
	}
	if _, err := parseCSV("f.csv", []byte("1e39,2,0\n"), CSVOptions{}, nil); err == nil {
		t.Error("1e39 accepted")
	}
}
