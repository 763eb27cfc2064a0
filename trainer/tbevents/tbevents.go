// Package tbevents writes and reads TensorBoard event files without
// TensorFlow: so a TensorBoard user can point their own tool at a Kiln run
// directory and see its scalars and histograms.
//
// An event file is a sequence of TFRecords, each
//
//	uint64 length (little-endian)
//	uint32 masked CRC32C of the 8 length bytes
//	length bytes of data: one serialised tensorflow.Event protobuf
//	uint32 masked CRC32C of the data
//
// where mask(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8, CRC32C being
// the Castagnoli polynomial (hash/crc32). The first record is an Event whose
// file_version is "brain.Event:2"; the others carry a Summary with Values,
// each a tag and either a simple_value (a scalar) or a HistogramProto.
//
// The few protobuf messages are encoded by hand (they are a dozen fields,
// all listed below), so the module needs no protobuf dependency:
//
//	Event           1 wall_time double, 2 step int64, 3 file_version string, 5 summary Summary,
//	                7 session_log SessionLog
//	SessionLog      1 status enum (START = 1)
//	Summary         1 value repeated Value
//	Summary.Value   1 tag string, 2 simple_value float, 5 histo HistogramProto
//	HistogramProto  1 min, 2 max, 3 num, 4 sum, 5 sum_squares double,
//	                6 bucket_limit packed double, 7 bucket packed double
//
// TensorBoard still reads these legacy scalar and histogram values (it
// converts them to its tensor form on load). Files are named
// events.out.tfevents.<unix seconds>.<hostname>, the name TensorFlow's own
// writer uses, so TensorBoard finds them under a --logdir.
package tbevents

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kiln-ml/kiln/internal/durable"
)

// FileVersion is the file_version of every event file's first record.
const FileVersion = "brain.Event:2"

// FilePrefix starts every event file's name.
const FilePrefix = "events.out.tfevents."

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// MaskedCRC is TFRecord's masked CRC32C of b.
func MaskedCRC(b []byte) uint32 {
	c := crc32.Checksum(b, castagnoli)
	return ((c >> 15) | (c << 17)) + 0xa282ead8
}

// Histogram is a TensorBoard HistogramProto: bucket i counts the values in
// (Limits[i-1], Limits[i]], the first from -∞.
type Histogram struct {
	Min, Max, Num, Sum, SumSquares float64
	Limits                         []float64 // right edge of each bucket
	Counts                         []float64 // values in each bucket
}

// Writer appends events to one event file. Its methods are safe for
// concurrent use. Records are buffered; Flush hands them to the OS so a live
// TensorBoard sees them.
type Writer struct {
	// Now gives each event's wall time; time.Now unless set (tests).
	Now func() time.Time

	mu   sync.Mutex
	f    *durable.File
	w    *bufio.Writer
	path string
	buf  []byte // scratch for one record
	err  error  // the first write error; later writes return it
}

// Create makes a new event file in dir, named as TensorFlow names them (a
// numeric suffix is added if a file of that name exists), and writes its
// file_version record.
func Create(dir string) (*Writer, error) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	host = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r < ' ' {
			return '_'
		}
		return r
	}, host)
	now := time.Now()
	base := fmt.Sprintf("%s%d.%s", FilePrefix, now.Unix(), host)
	var f *durable.File
	path := filepath.Join(dir, base)
	for i := 1; ; i++ {
		f, err = durable.CreateNew(path)
		if err == nil || !os.IsExist(err) || i > 1000 {
			break
		}
		path = filepath.Join(dir, fmt.Sprintf("%s.%d", base, i))
	}
	if err != nil {
		return nil, fmt.Errorf("tensorboard event file: %w", err)
	}
	w := &Writer{Now: time.Now, f: f, w: bufio.NewWriterSize(f, 64<<10), path: path}
	if err := w.write(w.event(0, func(b []byte) []byte { return appendString(b, 3, FileVersion) })); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	if err := w.Flush(); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return w, nil
}

// Path is the event file's path.
func (w *Writer) Path() string { return w.path }

// Scalar records one scalar value (a simple_value, a float32 on disk).
func (w *Writer) Scalar(tag string, step int64, value float64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.write(w.event(step, func(b []byte) []byte {
		return appendSummary(b, func(b []byte) []byte {
			b = appendString(b, 1, tag)
			b = appendTag(b, 2, wireFixed32)
			return binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(value)))
		})
	}))
}

// Histogram records one histogram.
func (w *Writer) Histogram(tag string, step int64, h Histogram) error {
	if len(h.Limits) != len(h.Counts) {
		return fmt.Errorf("tensorboard histogram %q: %d bucket limits but %d counts", tag, len(h.Limits), len(h.Counts))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.write(w.event(step, func(b []byte) []byte {
		return appendSummary(b, func(b []byte) []byte {
			b = appendString(b, 1, tag)
			return appendMessage(b, 5, func(b []byte) []byte { return appendHistogram(b, h) })
		})
	}))
}

// SessionStart records that a run (re)starts at step: TensorBoard then
// drops what earlier files of the directory hold from that step on, as it
// does for a TensorFlow job restarted from a checkpoint (an Event with
// session_log{status: START}, field 7, status field 1 = START).
func (w *Writer) SessionStart(step int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.write(w.event(step, func(b []byte) []byte {
		return appendMessage(b, 7, func(b []byte) []byte {
			b = appendTag(b, 1, wireVarint)
			return append(b, sessionStart)
		})
	}))
}

// sessionStart is SessionLog.SessionStatus START.
const sessionStart = 1

// Flush hands buffered records to the OS.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if w.f == nil {
		return fmt.Errorf("tensorboard event file %s: closed", w.path)
	}
	if err := w.w.Flush(); err != nil {
		w.err = fmt.Errorf("tensorboard event file %s: %w", w.path, err)
	}
	return w.err
}

// Sync flushes and makes what was written durable.
func (w *Writer) Sync() error {
	if err := w.Flush(); err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.f.Sync(); err != nil && w.err == nil {
		w.err = fmt.Errorf("tensorboard event file %s: %w", w.path, err)
	}
	return w.err
}

// Close flushes, syncs and closes the file. Closing twice is harmless.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return w.err
	}
	err := w.w.Flush()
	if serr := w.f.Sync(); err == nil {
		err = serr
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("tensorboard event file %s: %w", w.path, err)
	}
	return w.err
}

// event encodes an Event with the current wall time, step, and the fields
// body appends; the result lives in w.buf.
func (w *Writer) event(step int64, body func([]byte) []byte) []byte {
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	wall := float64(now().UnixNano()) / 1e9
	b := w.buf[:0]
	b = appendTag(b, 1, wireFixed64)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(wall))
	if step != 0 {
		b = appendTag(b, 2, wireVarint)
		b = binary.AppendUvarint(b, uint64(step))
	}
	b = body(b)
	w.buf = b
	return b
}

// write frames data as one TFRecord.
func (w *Writer) write(data []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.f == nil {
		return fmt.Errorf("tensorboard event file %s: closed", w.path)
	}
	var hdr [12]byte
	binary.LittleEndian.PutUint64(hdr[:8], uint64(len(data)))
	binary.LittleEndian.PutUint32(hdr[8:], MaskedCRC(hdr[:8]))
	var foot [4]byte
	binary.LittleEndian.PutUint32(foot[:], MaskedCRC(data))
	for _, p := range [][]byte{hdr[:], data, foot[:]} {
		if _, err := w.w.Write(p); err != nil {
			w.err = fmt.Errorf("tensorboard event file %s: %w", w.path, err)
			return w.err
		}
	}
	return nil
}

// Protobuf wire types.
const (
	wireVarint  = 0
	wireFixed64 = 1
	wireBytes   = 2
	wireFixed32 = 5
)

func appendTag(b []byte, field, wire int) []byte {
	return binary.AppendUvarint(b, uint64(field<<3|wire))
}

func appendString(b []byte, field int, s string) []byte {
	b = appendTag(b, field, wireBytes)
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendMessage appends a length-delimited sub-message whose body is written
// by body (encoded first into place, then its length inserted in front).
func appendMessage(b []byte, field int, body func([]byte) []byte) []byte {
	b = appendTag(b, field, wireBytes)
	start := len(b)
	b = body(b)
	n := len(b) - start
	var l [binary.MaxVarintLen64]byte
	k := binary.PutUvarint(l[:], uint64(n))
	b = append(b, l[:k]...)
	copy(b[start+k:], b[start:start+n])
	copy(b[start:], l[:k])
	return b
}

// appendSummary appends Event.summary holding one Summary.Value.
func appendSummary(b []byte, value func([]byte) []byte) []byte {
	return appendMessage(b, 5, func(b []byte) []byte { return appendMessage(b, 1, value) })
}

func appendDouble(b []byte, field int, v float64) []byte {
	b = appendTag(b, field, wireFixed64)
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
}

func appendPacked(b []byte, field int, vs []float64) []byte {
	b = appendTag(b, field, wireBytes)
	b = binary.AppendUvarint(b, uint64(8*len(vs)))
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b
}

func appendHistogram(b []byte, h Histogram) []byte {
	b = appendDouble(b, 1, h.Min)
	b = appendDouble(b, 2, h.Max)
	b = appendDouble(b, 3, h.Num)
	b = appendDouble(b, 4, h.Sum)
	b = appendDouble(b, 5, h.SumSquares)
	b = appendPacked(b, 6, h.Limits)
	return appendPacked(b, 7, h.Counts)
}
