package tbevents

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/kiln-ml/kiln/internal/userfile"
)

// ErrTruncated reports a file that ends inside a record: what a reader sees
// while a writer is still appending. The records before it are returned.
var ErrTruncated = errors.New("tensorboard event file ends inside a record")

// Event is a decoded tensorflow.Event (the fields this package writes).
type Event struct {
	WallTime    float64
	Step        int64
	FileVersion string
	Values      []Value
	// SessionStatus is session_log.status (1: START), 0 when absent.
	SessionStatus int
}

// Value is one Summary.Value: a scalar (HasScalar) or a histogram.
type Value struct {
	Tag       string
	Scalar    float32
	HasScalar bool
	Histogram *Histogram
}

// ReadRecords reads TFRecords from r, checking both CRCs of each.
func ReadRecords(r io.Reader) ([][]byte, error) {
	br := bufio.NewReader(r)
	var out [][]byte
	for n := 0; ; n++ {
		var hdr [12]byte
		k, err := io.ReadFull(br, hdr[:])
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("record %d: %w (%d header bytes)", n, ErrTruncated, k)
		}
		if got, want := binary.LittleEndian.Uint32(hdr[8:]), MaskedCRC(hdr[:8]); got != want {
			return out, fmt.Errorf("record %d: length CRC %#08x, want %#08x", n, got, want)
		}
		size := binary.LittleEndian.Uint64(hdr[:8])
		if size > 1<<30 {
			return out, fmt.Errorf("record %d: implausible length %d", n, size)
		}
		// The length is only a claim (its CRC guards against flipped bits,
		// not against a lying writer): grow the buffer with what arrives.
		data, err := io.ReadAll(io.LimitReader(br, int64(size)+4))
		if err != nil {
			return out, fmt.Errorf("record %d: %w", n, err)
		}
		if uint64(len(data)) < size+4 {
			return out, fmt.Errorf("record %d: %w", n, ErrTruncated)
		}
		data, foot := data[:size], data[size:]
		if got, want := binary.LittleEndian.Uint32(foot), MaskedCRC(data); got != want {
			return out, fmt.Errorf("record %d: data CRC %#08x, want %#08x", n, got, want)
		}
		out = append(out, data)
	}
}

// ReadFile reads and decodes every event of an event file, which must be a
// regular file: a FIFO would block, /dev/zero never end.
func ReadFile(path string) ([]Event, error) {
	f, _, err := userfile.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, rerr := ReadRecords(f)
	events := make([]Event, 0, len(recs))
	for i, rec := range recs {
		e, err := ParseEvent(rec)
		if err != nil {
			return events, fmt.Errorf("%s: record %d: %w", path, i, err)
		}
		events = append(events, e)
	}
	if rerr != nil {
		return events, fmt.Errorf("%s: %w", path, rerr)
	}
	return events, nil
}

// ParseEvent decodes one serialised Event. Fields it does not know are
// skipped, as protobuf decoders do.
func ParseEvent(b []byte) (Event, error) {
	var e Event
	err := walkFields(b, func(field, wire int, v uint64, bs []byte) error {
		switch {
		case field == 1 && wire == wireFixed64:
			e.WallTime = math.Float64frombits(v)
		case field == 2 && wire == wireVarint:
			e.Step = int64(v)
		case field == 3 && wire == wireBytes:
			e.FileVersion = string(bs)
		case field == 7 && wire == wireBytes:
			return walkFields(bs, func(field, wire int, v uint64, _ []byte) error {
				if field == 1 && wire == wireVarint {
					e.SessionStatus = int(v)
				}
				return nil
			})
		case field == 5 && wire == wireBytes:
			return walkFields(bs, func(field, wire int, _ uint64, bs []byte) error {
				if field != 1 || wire != wireBytes {
					return nil
				}
				val, err := parseValue(bs)
				e.Values = append(e.Values, val)
				return err
			})
		}
		return nil
	})
	return e, err
}

func parseValue(b []byte) (Value, error) {
	var val Value
	err := walkFields(b, func(field, wire int, v uint64, bs []byte) error {
		switch {
		case field == 1 && wire == wireBytes:
			val.Tag = string(bs)
		case field == 2 && wire == wireFixed32:
			val.Scalar, val.HasScalar = math.Float32frombits(uint32(v)), true
		case field == 5 && wire == wireBytes:
			h, err := parseHistogram(bs)
			val.Histogram = &h
			return err
		}
		return nil
	})
	return val, err
}

func parseHistogram(b []byte) (Histogram, error) {
	var h Histogram
	err := walkFields(b, func(field, wire int, v uint64, bs []byte) error {
		f := math.Float64frombits(v)
		switch {
		case wire == wireFixed64 && field >= 1 && field <= 5:
			*[]*float64{&h.Min, &h.Max, &h.Num, &h.Sum, &h.SumSquares}[field-1] = f
		case wire == wireBytes && (field == 6 || field == 7):
			if len(bs)%8 != 0 {
				return fmt.Errorf("histogram field %d: %d bytes is not whole doubles", field, len(bs))
			}
			vs := make([]float64, len(bs)/8)
			for i := range vs {
				vs[i] = math.Float64frombits(binary.LittleEndian.Uint64(bs[8*i:]))
			}
			if field == 6 {
				h.Limits = append(h.Limits, vs...)
			} else {
				h.Counts = append(h.Counts, vs...)
			}
		case wire == wireFixed64 && (field == 6 || field == 7): // unpacked repeated
			if field == 6 {
				h.Limits = append(h.Limits, f)
			} else {
				h.Counts = append(h.Counts, f)
			}
		}
		return nil
	})
	return h, err
}

// walkFields calls visit for each field of a protobuf message: v holds a
// varint or fixed value, bs a length-delimited one.
func walkFields(b []byte, visit func(field, wire int, v uint64, bs []byte) error) error {
	for len(b) > 0 {
		key, n := binary.Uvarint(b)
		if n <= 0 {
			return errors.New("protobuf: bad field key")
		}
		b = b[n:]
		field, wire := int(key>>3), int(key&7)
		var v uint64
		var bs []byte
		switch wire {
		case wireVarint:
			v, n = binary.Uvarint(b)
			if n <= 0 {
				return fmt.Errorf("protobuf: field %d: bad varint", field)
			}
			b = b[n:]
		case wireFixed64:
			if len(b) < 8 {
				return fmt.Errorf("protobuf: field %d: short fixed64", field)
			}
			v, b = binary.LittleEndian.Uint64(b), b[8:]
		case wireFixed32:
			if len(b) < 4 {
				return fmt.Errorf("protobuf: field %d: short fixed32", field)
			}
			v, b = uint64(binary.LittleEndian.Uint32(b)), b[4:]
		case wireBytes:
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return fmt.Errorf("protobuf: field %d: bad length", field)
			}
			bs, b = b[n:n+int(l)], b[n+int(l):]
		default:
			return fmt.Errorf("protobuf: field %d: unsupported wire type %d", field, wire)
		}
		if field == 0 {
			return errors.New("protobuf: field number 0")
		}
		if err := visit(field, wire, v, bs); err != nil {
			return err
		}
	}
	return nil
}
