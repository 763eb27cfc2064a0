package tbevents

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// crc32cBitwise is CRC32C computed bit by bit from the reflected Castagnoli
// polynomial: an oracle independent of hash/crc32's tables.
func crc32cBitwise(b []byte) uint32 {
	c := ^uint32(0)
	for _, x := range b {
		c ^= uint32(x)
		for k := 0; k < 8; k++ {
			if c&1 != 0 {
				c = c>>1 ^ 0x82f63b78
			} else {
				c >>= 1
			}
		}
	}
	return ^c
}

func maskedBitwise(b []byte) uint32 {
	c := crc32cBitwise(b)
	return (c>>15 | c<<17) + 0xa282ead8
}

// frame builds a TFRecord by hand.
func frame(data []byte) []byte {
	var out []byte
	l := binary.LittleEndian.AppendUint64(nil, uint64(len(data)))
	out = append(out, l...)
	out = binary.LittleEndian.AppendUint32(out, maskedBitwise(l))
	out = append(out, data...)
	return binary.LittleEndian.AppendUint32(out, maskedBitwise(data))
}

func TestCRC32C(t *testing.T) {
	// The CRC-32C check value (RFC 3720, iSCSI).
	if got := crc32cBitwise([]byte("123456789")); got != 0xe3069283 {
		t.Fatalf("bitwise oracle: %#x, want 0xe3069283", got)
	}
	for _, s := range []string{"", "a", "123456789", strings.Repeat("kiln", 100)} {
		if got, want := MaskedCRC([]byte(s)), maskedBitwise([]byte(s)); got != want {
			t.Errorf("MaskedCRC(%q) = %#x, want %#x", s, got, want)
		}
	}
}

func fixedClock(secs ...float64) func() time.Time {
	i := 0
	return func() time.Time {
		s := secs[min(i, len(secs)-1)]
		i++
		return time.Unix(0, int64(s*1e9))
	}
}

// TestBytes checks a whole file byte by byte against records built by hand:
// the field keys and payloads written out from the .proto field numbers.
func TestBytes(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.Now = fixedClock(1.5, 2, 3)
	if err := w.Scalar("loss", 7, 0.5); err != nil {
		t.Fatal(err)
	}
	h := Histogram{Min: -1, Max: 1, Num: 3, Sum: 0.5, SumSquares: 2.25, Limits: []float64{0, 1}, Counts: []float64{1, 2}}
	if err := w.Histogram("h", 300, h); err != nil {
		t.Fatal(err)
	}
	if err := w.SessionStart(5); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}

	// Record 0: the file version, at the real wall time: read it back from
	// the file and rebuild the record around it.
	if len(got) < 21 {
		t.Fatalf("file has %d bytes", len(got))
	}
	wall0 := got[12+1 : 12+9]
	rec0 := append([]byte{0x09}, wall0...)
	rec0 = append(rec0, 0x1a, 13)
	rec0 = append(rec0, "brain.Event:2"...)
	if w0 := math.Float64frombits(binary.LittleEndian.Uint64(wall0)); math.Abs(w0-float64(time.Now().Unix())) > 60 {
		t.Errorf("first record's wall time %v is not now", w0)
	}

	// Record 1: Event{wall_time 1.5, step 7, summary{value{tag "loss", simple_value 0.5}}}.
	rec1 := []byte{
		0x09, 0, 0, 0, 0, 0, 0, 0xf8, 0x3f, // 1: wall_time 1.5 (double)
		0x10, 0x07, // 2: step 7 (varint)
		0x2a, 13, // 5: summary, 13 bytes
		0x0a, 11, // Summary 1: value, 11 bytes
		0x0a, 4, 'l', 'o', 's', 's', // Value 1: tag
		0x15, 0, 0, 0, 0x3f, // Value 2: simple_value 0.5 (float)
	}

	// Record 2: Event{wall_time 2, step 300, summary{value{tag "h", histo}}}.
	dbl := func(key byte, v float64) []byte {
		return binary.LittleEndian.AppendUint64([]byte{key}, math.Float64bits(v))
	}
	var histo []byte
	histo = append(histo, dbl(0x09, -1)...)  // 1: min
	histo = append(histo, dbl(0x11, 1)...)   // 2: max
	histo = append(histo, dbl(0x19, 3)...)   // 3: num
	histo = append(histo, dbl(0x21, 0.5)...) // 4: sum
	histo = append(histo, dbl(0x29, 2.25)...)
	histo = append(histo, 0x32, 16) // 6: bucket_limit, packed
	histo = append(histo, dbl(0, 0)[1:]...)
	histo = append(histo, dbl(0, 1)[1:]...)
	histo = append(histo, 0x3a, 16) // 7: bucket, packed
	histo = append(histo, dbl(0, 1)[1:]...)
	histo = append(histo, dbl(0, 2)[1:]...)
	if len(histo) != 5*9+2*18 {
		t.Fatalf("hand-built histogram has %d bytes", len(histo))
	}
	value := append([]byte{0x0a, 1, 'h', 0x2a, byte(len(histo))}, histo...)
	summary := append([]byte{0x0a, byte(len(value))}, value...)
	rec2 := dbl(0x09, 2)
	rec2 = append(rec2, 0x10, 0xac, 0x02) // step 300 = 0b10_0101100
	rec2 = append(rec2, 0x2a, byte(len(summary)))
	rec2 = append(rec2, summary...)

	// Record 3: Event{wall_time 3, step 5, session_log{status START}}.
	rec3 := append(dbl(0x09, 3), 0x10, 0x05, 0x3a, 2, 0x08, 0x01)

	want := append(append(append(frame(rec0), frame(rec1)...), frame(rec2)...), frame(rec3)...)
	if !bytes.Equal(got, want) {
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("files differ at byte %d of %d/%d: got %#x, want %#x", i, len(got), len(want), got[i], want[i])
			}
		}
		t.Fatalf("file has %d bytes, want %d", len(got), len(want))
	}

	// And the reader gives back what was written.
	ev, err := ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 4 || ev[3].SessionStatus != 1 || ev[3].Step != 5 || ev[0].FileVersion != FileVersion || ev[1].Step != 7 || ev[1].WallTime != 1.5 ||
		len(ev[1].Values) != 1 || ev[1].Values[0].Tag != "loss" || !ev[1].Values[0].HasScalar || ev[1].Values[0].Scalar != 0.5 {
		t.Fatalf("read back %+v", ev)
	}
	gh := ev[2].Values[0].Histogram
	if ev[2].Step != 300 || gh == nil || gh.Min != -1 || gh.Max != 1 || gh.Num != 3 || gh.Sum != 0.5 || gh.SumSquares != 2.25 ||
		len(gh.Limits) != 2 || gh.Limits[1] != 1 || len(gh.Counts) != 2 || gh.Counts[1] != 2 {
		t.Fatalf("histogram read back as %+v", gh)
	}
}

func TestNaming(t *testing.T) {
	dir := t.TempDir()
	a, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Create(dir) // most likely the same second: a suffix keeps both
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	host, _ := os.Hostname()
	for _, w := range []*Writer{a, b} {
		name := filepath.Base(w.Path())
		if !strings.HasPrefix(name, FilePrefix) || !strings.Contains(name, "."+host) {
			t.Errorf("file name %q", name)
		}
	}
	if a.Path() == b.Path() {
		t.Fatal("two writers share a file")
	}
	if _, err := Create(filepath.Join(dir, "missing", "dir")); err == nil {
		t.Error("Create in a missing directory: no error")
	}
}

func TestReaderRejects(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := w.Scalar("x", int64(i), float64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Scalar("x", 9, 1); err == nil {
		t.Error("write after Close: no error")
	}
	good, _ := os.ReadFile(w.Path())
	p := filepath.Join(dir, "bad")

	// Cut inside the last record: the whole records before it come back.
	os.WriteFile(p, good[:len(good)-3], 0o644)
	ev, err := ReadFile(p)
	if !errors.Is(err, ErrTruncated) || len(ev) != 5 {
		t.Errorf("truncated: %d events, %v", len(ev), err)
	}
	// A flipped bit in a length and in the data.
	for _, at := range []int{2, 30} {
		bad := bytes.Clone(good)
		bad[at] ^= 0x10
		os.WriteFile(p, bad, 0o644)
		if _, err := ReadFile(p); err == nil || !strings.Contains(err.Error(), "CRC") {
			t.Errorf("flipped byte %d: %v", at, err)
		}
	}
	if _, err := ParseEvent([]byte{0x0a, 0x05, 'a'}); err == nil {
		t.Error("a length past the end: no error")
	}
	if err := w.Histogram("h", 1, Histogram{Limits: []float64{1}}); err == nil {
		t.Error("histogram with mismatched buckets: no error")
	}
}

func TestConcurrentWrites(t *testing.T) {
	w, err := Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				w.Scalar("g", int64(g*100+i), float64(i))
				if i%10 == 0 {
					w.Flush()
				}
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	ev, err := ReadFile(w.Path())
	if err != nil || len(ev) != 201 {
		t.Fatalf("%d events, %v", len(ev), err)
	}
}

// TestProtocDecodeRaw cross-checks the encoding with protoc's own decoder
// when protoc is installed (Debian's protobuf-compiler); it is optional.
func TestProtocDecodeRaw(t *testing.T) {
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		t.Skip("protoc not installed (apt-get install protobuf-compiler)")
	}
	w, err := Create(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	w.Now = fixedClock(1.5)
	w.Histogram("conv1.weight", 12, Histogram{Min: -2, Max: 3, Num: 4, Limits: []float64{0, 3}, Counts: []float64{1, 3}})
	w.Close()
	b, _ := os.ReadFile(w.Path())
	recs, err := ReadRecords(bytes.NewReader(b))
	if err != nil || len(recs) != 2 {
		t.Fatal(len(recs), err)
	}
	cmd := exec.Command(protoc, "--decode_raw")
	cmd.Stdin = bytes.NewReader(recs[1])
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("protoc: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{"1: 0x3ff8000000000000", "2: 12", `1: "conv1.weight"`, "1: 0xc000000000000000", "3: 0x4010000000000000"} {
		if !strings.Contains(s, want) {
			t.Errorf("protoc --decode_raw lacks %q:\n%s", want, s)
		}
	}
}
