package tbevents

import (
	"bytes"
	"encoding/binary"
	"os"
	"testing"
)

// seedFile is a real event file as Writer writes it: the version record, a
// scalar, a histogram and a session start.
func seedFile(f *testing.F) []byte {
	w, err := Create(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	if err := w.Scalar("loss", 7, 0.5); err != nil {
		f.Fatal(err)
	}
	h := Histogram{Min: -1, Max: 1, Num: 3, Sum: 0.5, SumSquares: 2.25, Limits: []float64{0, 1}, Counts: []float64{1, 2}}
	if err := w.Histogram("weights/conv1", 300, h); err != nil {
		f.Fatal(err)
	}
	if err := w.SessionStart(5); err != nil {
		f.Fatal(err)
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	b, err := os.ReadFile(w.Path())
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// FuzzReadRecords feeds arbitrary bytes to the TFRecord framing: it must
// return whole records, framed again unchanged, and an error for the rest,
// never panic or allocate what the input does not hold.
func FuzzReadRecords(f *testing.F) {
	file := seedFile(f)
	f.Add(file)
	f.Add(file[:len(file)-3])
	f.Add(frame(nil))
	// A length whose CRC checks out, claiming a gigabyte that is not there.
	l := binary.LittleEndian.AppendUint64(nil, 1<<30)
	f.Add(append(binary.LittleEndian.AppendUint32(l, MaskedCRC(l)), "a few bytes"...))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := ReadRecords(bytes.NewReader(b))
		var again []byte
		for _, r := range recs {
			again = append(again, frame(r)...)
		}
		if !bytes.HasPrefix(b, again) || err == nil && len(again) != len(b) {
			t.Fatalf("%d records (%v) are not the input's %d bytes framed", len(recs), err, len(b))
		}
		for _, r := range recs {
			_, _ = ParseEvent(r) // any error is fine, a panic is not
		}
	})
}

// FuzzParseEvent feeds arbitrary bytes to the Event decoder (ReadRecords'
// CRCs keep mutations of a file from reaching it): an error or an event,
// never a panic.
func FuzzParseEvent(f *testing.F) {
	recs, err := ReadRecords(bytes.NewReader(seedFile(f)))
	if err != nil {
		f.Fatal(err)
	}
	for _, r := range recs {
		f.Add(r)
	}
	f.Add([]byte{0x0a, 0x05, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEvent(b)
		if err != nil {
			return
		}
		for _, v := range e.Values {
			if h := v.Histogram; h != nil && len(h.Limits)+len(h.Counts) > len(b)/8 {
				t.Fatalf("%d histogram values from %d bytes", len(h.Limits)+len(h.Counts), len(b))
			}
		}
	})
}
