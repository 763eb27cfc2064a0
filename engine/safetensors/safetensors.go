// Package safetensors reads and writes the safetensors format, the plain
// tensor file that PyTorch, JAX and the Hugging Face tools share, so weights
// move between them and Kiln without pickle.
//
// # Format
//
// A file is an 8-byte little-endian unsigned header length N, then N bytes of
// UTF-8 JSON, then the tensor data:
//
//	{"__metadata__": {"key": "value", …},
//	 "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, …}
//
// Offsets count bytes from the start of the data section; each tensor is
// stored row-major, little-endian, and the tensors tile the data section
// exactly, with no gaps, overlaps or trailing bytes. The JSON may be padded
// with spaces; writers pad it so that the data starts 8-byte aligned.
//
// # What Kiln reads and writes
//
// Write stores Float32 tensors as F32 and Float64 tensors as F64. Read returns
// F32 and F64 tensors as Float32 and Float64, and widens F16 and BF16 to
// Float32 (exactly: every half value is a float32 value). Other dtypes (the
// integer and 8-bit float types) are valid safetensors but Kiln has no tensor
// for them, so Read refuses them with an error naming the tensor; but for
// the one PyTorch writes into every model with batch norm, the I64 step
// counter "….num_batches_tracked", which Read leaves out (Kiln's batch norm
// has no use for it), so that a PyTorch state_dict loads.
//
// Output is deterministic: metadata keys and tensors are written sorted by
// name (the tensor order of PyTorch's safetensors for files of one dtype; it
// sorts by dtype first), so the same tensors give the same bytes.
//
// Read checks everything before it trusts it: a truncated file, a header
// length beyond the file, bad JSON, duplicate names, unknown dtypes, offsets
// out of range, overlapping or leaving gaps, and a shape whose size does not
// match its bytes are all reported as a *FormatError naming the file (when
// known), the tensor and the problem. Corrupt input never panics.
package safetensors

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/durable"
	"github.com/kiln-ml/kiln/internal/userfile"
)

// MaxHeaderSize is the largest JSON header Read accepts (the limit of the
// reference implementation), so a corrupt length cannot ask for gigabytes.
const MaxHeaderSize = 100_000_000

const metadataKey = "__metadata__"

// ErrFormat is wrapped by every error about malformed or unsupported input,
// so callers can tell a bad file from an I/O failure with errors.Is.
var ErrFormat = errors.New("invalid safetensors data")

// FormatError describes what is wrong with a safetensors file.
type FormatError struct {
	File   string // path of the file, "" when reading from memory or a stream
	Tensor string // the tensor concerned, "" when the problem is not one tensor's
	Msg    string
}

func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString("safetensors: ")
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	if e.Tensor != "" {
		fmt.Fprintf(&b, "tensor %q: ", e.Tensor)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap makes errors.Is(err, ErrFormat) true.
func (e *FormatError) Unwrap() error { return ErrFormat }

func formatErr(tensor, format string, args ...any) *FormatError {
	return &FormatError{Tensor: tensor, Msg: fmt.Sprintf(format, args...)}
}

// withFile sets the file name on a FormatError, and wraps other errors with it.
func withFile(path string, err error) error {
	if err == nil {
		return nil
	}
	var fe *FormatError
	if errors.As(err, &fe) {
		fe.File = path
		return fe
	}
	return fmt.Errorf("safetensors: %s: %w", path, err)
}

// dtypeSize holds the element size in bytes of every byte-sized dtype of the
// format; only the float ones become Kiln tensors.
var dtypeSize = map[string]int{
	"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1,
	"I16": 2, "U16": 2, "F16": 2, "BF16": 2,
	"I32": 4, "U32": 4, "F32": 4,
	"I64": 8, "U64": 8, "F64": 8,
}

type entry struct {
	name       string
	dtype      string
	shape      []int
	begin, end int
}

// Decode parses a whole safetensors file held in memory. The returned tensors
// own their data (data may be reused afterwards).
func Decode(data []byte) (map[string]*engine.Tensor, map[string]string, error) {
	if len(data) < 8 {
		return nil, nil, formatErr("", "truncated: %d bytes, need 8 for the header length", len(data))
	}
	n := binary.LittleEndian.Uint64(data)
	if err := checkHeaderLen(n, int64(len(data)-8)); err != nil {
		return nil, nil, err
	}
	header, body := data[8:8+n], data[8+n:]
	entries, meta, err := parseHeader(header)
	if err != nil {
		return nil, nil, err
	}
	if err := checkLayout(entries, len(body)); err != nil {
		return nil, nil, err
	}
	tensors, err := decodeAll(entries, body)
	return tensors, meta, err
}

// checkHeaderLen refuses a header length beyond the limit or, when rest (the
// bytes after the length) is known, beyond the input: before it is trusted
// with an allocation.
func checkHeaderLen(n uint64, rest int64) error {
	switch {
	case n > MaxHeaderSize:
		return formatErr("", "header length %d exceeds the %d-byte limit", n, MaxHeaderSize)
	case rest >= 0 && n > uint64(rest):
		return formatErr("", "header length %d exceeds the %d bytes after it (truncated file?)", n, rest)
	}
	return nil
}

func decodeAll(entries []entry, body []byte) (map[string]*engine.Tensor, error) {
	tensors := make(map[string]*engine.Tensor, len(entries))
	for _, e := range entries {
		if e.dtype == "I64" && strings.HasSuffix(e.name, ".num_batches_tracked") {
			continue
		}
		t, err := decodeTensor(e, body[e.begin:e.end])
		if err != nil {
			return nil, err
		}
		tensors[e.name] = t
	}
	return tensors, nil
}

// Read reads a safetensors stream and decodes it. It reads what the header
// says the tensors hold, then checks that the stream ends there, so an
// endless or oversized stream is an error rather than a read that never ends.
func Read(r io.Reader) (map[string]*engine.Tensor, map[string]string, error) {
	return readFrom(r, -1)
}

// ReadFile reads and decodes the safetensors file at path, which must be a
// regular file: a FIFO or a device is refused before it is opened. The
// header is checked against the file's size before the tensors are read.
// Errors name path.
func ReadFile(path string) (map[string]*engine.Tensor, map[string]string, error) {
	f, fi, err := userfile.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("safetensors: %w", err)
	}
	defer f.Close()
	ts, meta, err := readFrom(f, fi.Size())
	return ts, meta, withFile(path, err)
}

// readFrom decodes a stream of size bytes (-1: unknown), allocating only
// what the header claims and, when the size is known, only once the claims
// fit it; with the size unknown, buffers grow with what actually arrives.
func readFrom(r io.Reader, size int64) (map[string]*engine.Tensor, map[string]string, error) {
	var lenBuf [8]byte
	if k, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return nil, nil, readErr(err, "truncated: %d bytes, need 8 for the header length", k)
	}
	n := binary.LittleEndian.Uint64(lenBuf[:])
	rest := int64(-1)
	if size >= 0 {
		rest = max(size-8, 0)
	}
	if err := checkHeaderLen(n, rest); err != nil {
		return nil, nil, err
	}
	header, err := readN(r, int64(n), size >= 0)
	if err != nil {
		return nil, nil, readErr(err, "header length %d exceeds the %d bytes after it (truncated file?)", n, len(header))
	}
	entries, meta, err := parseHeader(header)
	if err != nil {
		return nil, nil, err
	}
	bodyLen := 0
	for _, e := range entries {
		bodyLen = max(bodyLen, e.end)
	}
	if size >= 0 {
		bodyLen = int(size - 8 - int64(n))
	}
	if err := checkLayout(entries, bodyLen); err != nil {
		return nil, nil, err
	}
	body, err := readN(r, int64(bodyLen), size >= 0)
	if err != nil {
		if lerr := checkLayout(entries, len(body)); lerr != nil {
			err = lerr
		}
		return nil, nil, readErr(err, "truncated data section")
	}
	if k, _ := io.ReadFull(r, lenBuf[:1]); k > 0 {
		return nil, nil, formatErr("", "tensors cover %d bytes of data but more follow after the header", bodyLen)
	}
	tensors, err := decodeAll(entries, body)
	return tensors, meta, err
}

// readN reads n bytes into a buffer of n (known: the size was checked) or
// one that grows as bytes arrive.
func readN(r io.Reader, n int64, known bool) ([]byte, error) {
	if known {
		b := make([]byte, n)
		k, err := io.ReadFull(r, b)
		return b[:k], err
	}
	b, err := io.ReadAll(io.LimitReader(r, n))
	if err == nil && int64(len(b)) < n {
		err = io.ErrUnexpectedEOF
	}
	return b, err
}

// readErr turns the end of the input into a format error, and leaves other
// errors (I/O failures, format errors already) as they are.
func readErr(err error, format string, args ...any) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return formatErr("", format, args...)
	}
	var fe *FormatError
	if errors.As(err, &fe) {
		return err
	}
	return fmt.Errorf("safetensors: %w", err)
}

func parseHeader(header []byte) ([]entry, map[string]string, error) {
	if !utf8.Valid(header) {
		return nil, nil, formatErr("", "header is not valid UTF-8")
	}
	if len(header) == 0 || header[0] != '{' {
		return nil, nil, formatErr("", "header does not start with '{'")
	}
	dec := json.NewDecoder(bytes.NewReader(header))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil { // the opening '{'
		return nil, nil, formatErr("", "bad header JSON: %v", err)
	}
	var (
		entries []entry
		meta    map[string]string
		seen    = map[string]bool{}
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, formatErr("", "bad header JSON: %v", err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, nil, formatErr("", "bad header JSON: key %v is not a string", tok)
		}
		if seen[name] {
			return nil, nil, formatErr(name, "appears twice in the header")
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, formatErr("", "bad header JSON after key %q: %v", name, err)
		}
		if name == metadataKey {
			if err := json.Unmarshal(raw, &meta); err != nil {
				return nil, nil, formatErr("", "__metadata__ must map strings to strings: %v", err)
			}
			if meta == nil { // "__metadata__": null
				meta = map[string]string{}
			}
			continue
		}
		e, err := parseEntry(name, raw)
		if err != nil {
			return nil, nil, err
		}
		entries = append(entries, e)
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return nil, nil, formatErr("", "bad header JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, formatErr("", "bad header JSON: trailing data after the header object")
	}
	return entries, meta, nil
}

func parseEntry(name string, raw json.RawMessage) (entry, error) {
	var info struct {
		Dtype       *string       `json:"dtype"`
		Shape       []json.Number `json:"shape"`
		DataOffsets []json.Number `json:"data_offsets"`
	}
	if err := json.Unmarshal(raw, &info); err != nil {
		return entry{}, formatErr(name, "bad header entry: %v", err)
	}
	e := entry{name: name}
	switch {
	case info.Dtype == nil:
		return e, formatErr(name, "no dtype")
	case info.Shape == nil:
		return e, formatErr(name, "no shape")
	case info.DataOffsets == nil:
		return e, formatErr(name, "no data_offsets")
	case len(info.DataOffsets) != 2:
		return e, formatErr(name, "data_offsets has %d values, want [begin, end]", len(info.DataOffsets))
	}
	e.dtype = *info.Dtype
	size, ok := dtypeSize[e.dtype]
	if !ok {
		return e, formatErr(name, "unknown dtype %q", e.dtype)
	}
	e.shape = make([]int, len(info.Shape))
	numel, overflow := 1, false
	for i, v := range info.Shape {
		d, err := count(v)
		if err != nil {
			return e, formatErr(name, "shape[%d] = %s: %v", i, v, err)
		}
		e.shape[i] = d
		if d != 0 && numel > math.MaxInt/d {
			overflow = true
		}
		numel *= d
	}
	var err error
	if e.begin, err = count(info.DataOffsets[0]); err != nil {
		return e, formatErr(name, "data_offsets begin %s: %v", info.DataOffsets[0], err)
	}
	if e.end, err = count(info.DataOffsets[1]); err != nil {
		return e, formatErr(name, "data_offsets end %s: %v", info.DataOffsets[1], err)
	}
	if e.end < e.begin {
		return e, formatErr(name, "data_offsets [%d, %d] end before begin", e.begin, e.end)
	}
	if slices.Contains(e.shape, 0) {
		numel, overflow = 0, false
	}
	if overflow || numel > math.MaxInt/size || numel*size != e.end-e.begin {
		return e, formatErr(name, "shape %v of %s needs %s bytes but data_offsets [%d, %d] hold %d",
			e.shape, e.dtype, bytesNeeded(e.shape, size), e.begin, e.end, e.end-e.begin)
	}
	return e, nil
}

// bytesNeeded prints the byte size of a shape without overflowing.
func bytesNeeded(shape []int, size int) string {
	f := float64(size)
	for _, d := range shape {
		f *= float64(d)
	}
	if f < 1<<53 {
		return fmt.Sprint(int64(f))
	}
	return fmt.Sprintf("%.3g", f)
}

// count parses a JSON number that must be a non-negative integer fitting an int.
func count(n json.Number) (int, error) {
	v, err := strconv.ParseUint(n.String(), 10, 64)
	switch {
	case errors.Is(err, strconv.ErrRange) || v > math.MaxInt:
		return 0, errors.New("out of range")
	case err != nil:
		return 0, errors.New("not a non-negative integer")
	}
	return int(v), nil
}

// checkLayout verifies that the tensors tile the data section exactly.
func checkLayout(entries []entry, bodyLen int) error {
	sorted := slices.Clone(entries)
	slices.SortFunc(sorted, func(a, b entry) int {
		if a.begin != b.begin {
			return a.begin - b.begin
		}
		if a.end != b.end {
			return a.end - b.end
		}
		return strings.Compare(a.name, b.name)
	})
	pos, prev := 0, ""
	for _, e := range sorted {
		switch {
		case e.begin > pos:
			return formatErr(e.name, "data_offsets [%d, %d] leave bytes %d..%d unused", e.begin, e.end, pos, e.begin)
		case e.begin < pos:
			return formatErr(e.name, "data_offsets [%d, %d] overlap tensor %q (which ends at %d)", e.begin, e.end, prev, pos)
		}
		if e.end > bodyLen {
			return formatErr(e.name, "data_offsets [%d, %d] run past the %d-byte data section (truncated file?)", e.begin, e.end, bodyLen)
		}
		if e.end > e.begin {
			pos, prev = e.end, e.name
		}
	}
	if pos != bodyLen {
		return formatErr("", "tensors cover %d bytes of data but the file holds %d after the header", pos, bodyLen)
	}
	return nil
}

func decodeTensor(e entry, b []byte) (*engine.Tensor, error) {
	le := binary.LittleEndian
	switch e.dtype {
	case "F64":
		t := engine.New(engine.Float64, e.shape...)
		d := t.Float64()
		for i := range d {
			d[i] = math.Float64frombits(le.Uint64(b[8*i:]))
		}
		return t, nil
	case "F32", "F16", "BF16":
		t := engine.New(engine.Float32, e.shape...)
		d := t.Float32()
		switch e.dtype {
		case "F32":
			for i := range d {
				d[i] = math.Float32frombits(le.Uint32(b[4*i:]))
			}
		case "F16":
			for i := range d {
				d[i] = halfToFloat32(le.Uint16(b[2*i:]))
			}
		case "BF16":
			for i := range d {
				d[i] = math.Float32frombits(uint32(le.Uint16(b[2*i:])) << 16)
			}
		}
		return t, nil
	}
	return nil, formatErr(e.name, "dtype %s is not supported (Kiln reads F32, F64, F16 and BF16)", e.dtype)
}

// halfToFloat32 widens an IEEE 754 binary16 value exactly.
func halfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	case exp != 0: // normal
		return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
	case frac == 0: // ±0
		return math.Float32frombits(sign)
	}
	// Subnormal: value = frac · 2⁻²⁴, exact in float32.
	v := float32(frac) * (1.0 / (1 << 24))
	if sign != 0 {
		v = -v
	}
	return v
}

// Encode returns the safetensors bytes of tensors and meta (see Write).
func Encode(tensors map[string]*engine.Tensor, meta map[string]string) ([]byte, error) {
	var b bytes.Buffer
	if err := Write(&b, tensors, meta); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Write writes tensors (CPU Float32 as F32, Float64 as F64) and meta (may be
// nil) in safetensors format. Tensors and metadata keys are sorted by name and
// the header is padded with spaces to a multiple of 8 bytes, so the output is
// deterministic and the data is 8-byte aligned.
func Write(w io.Writer, tensors map[string]*engine.Tensor, meta map[string]string) error {
	header, order, err := buildHeader(tensors, meta)
	if err != nil {
		return err
	}
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(header)))
	if _, err := w.Write(lenBuf[:]); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	if _, err := w.Write(header); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	// Convert through a fixed buffer rather than copying each tensor whole.
	buf := make([]byte, 0, 64<<10)
	for _, name := range order {
		t, err := engine.ToCPU(nil, tensors[name]) // a GPU tensor is written from a host copy
		if err != nil {
			return fmt.Errorf("safetensors: %s: %w", name, err)
		}
		if buf, err = writeValues(w, t, buf); err != nil {
			return fmt.Errorf("safetensors: %w", err)
		}
	}
	if _, err := w.Write(buf); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}

// writeValues appends t's values, little-endian, to buf and writes buf to w
// whenever it is full; it returns what is left in buf, for the caller to
// write.
func writeValues(w io.Writer, t *engine.Tensor, buf []byte) ([]byte, error) {
	le := binary.LittleEndian
	flush := func() error {
		_, err := w.Write(buf)
		buf = buf[:0]
		return err
	}
	if t.DType() == engine.Float64 {
		for _, v := range t.Float64() {
			if len(buf)+8 > cap(buf) {
				if err := flush(); err != nil {
					return buf, err
				}
			}
			buf = le.AppendUint64(buf, math.Float64bits(v))
		}
		return buf, nil
	}
	for _, v := range t.Float32() {
		if len(buf)+4 > cap(buf) {
			if err := flush(); err != nil {
				return buf, err
			}
		}
		buf = le.AppendUint32(buf, math.Float32bits(v))
	}
	return buf, nil
}

// Digest is the SHA-256 of meta and of tensors, each tensor's name, dtype
// and shape followed by its values as Write lays them out. Decoding gives
// back the same values bit for bit, so a reader that recomputes it from
// what it read finds a file damaged since it was written (a bit flipped on
// disk, an edit) where the format's own checks see nothing wrong.
func Digest(tensors map[string]*engine.Tensor, meta string) ([sha256.Size]byte, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00%s", len(meta), meta)
	buf := make([]byte, 0, 64<<10)
	for _, name := range slices.Sorted(maps.Keys(tensors)) {
		t, err := engine.ToCPU(nil, tensors[name])
		if err != nil {
			return [sha256.Size]byte{}, fmt.Errorf("safetensors: %s: %w", name, err)
		}
		h.Write(buf)
		fmt.Fprintf(h, "\x00%s\x00%v\x00%v\x00", name, t.DType(), t.Shape())
		if buf, err = writeValues(h, t, buf[:0]); err != nil {
			return [sha256.Size]byte{}, err
		}
	}
	h.Write(buf)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum, nil
}

func buildHeader(tensors map[string]*engine.Tensor, meta map[string]string) ([]byte, []string, error) {
	order := make([]string, 0, len(tensors))
	for name, t := range tensors {
		switch {
		case name == metadataKey:
			return nil, nil, fmt.Errorf("safetensors: a tensor may not be called %q", metadataKey)
		case t == nil:
			return nil, nil, fmt.Errorf("safetensors: tensor %q is nil", name)
		case t.DType() != engine.Float32 && t.DType() != engine.Float64:
			return nil, nil, fmt.Errorf("safetensors: tensor %q has unsupported dtype %v", name, t.DType())
		case !utf8.ValidString(name):
			return nil, nil, fmt.Errorf("safetensors: tensor name %q is not valid UTF-8", name)
		}
		order = append(order, name)
	}
	slices.Sort(order)

	var h bytes.Buffer
	h.WriteByte('{')
	if len(meta) > 0 {
		keys := make([]string, 0, len(meta))
		for k, v := range meta {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, nil, fmt.Errorf("safetensors: metadata %q is not valid UTF-8", k)
			}
			keys = append(keys, k)
		}
		slices.Sort(keys)
		h.WriteString(`"` + metadataKey + `":{`)
		for i, k := range keys {
			if i > 0 {
				h.WriteByte(',')
			}
			writeJSONString(&h, k)
			h.WriteByte(':')
			writeJSONString(&h, meta[k])
		}
		h.WriteByte('}')
	}
	offset := 0
	for i, name := range order {
		t := tensors[name]
		if i > 0 || len(meta) > 0 {
			h.WriteByte(',')
		}
		dtype := "F32"
		if t.DType() == engine.Float64 {
			dtype = "F64"
		}
		size := t.Len() * t.DType().Size()
		writeJSONString(&h, name)
		fmt.Fprintf(&h, `:{"dtype":"%s","shape":[`, dtype)
		for j, d := range t.Shape() {
			if j > 0 {
				h.WriteByte(',')
			}
			fmt.Fprint(&h, d)
		}
		fmt.Fprintf(&h, `],"data_offsets":[%d,%d]}`, offset, offset+size)
		offset += size
	}
	h.WriteByte('}')
	for h.Len()%8 != 0 {
		h.WriteByte(' ')
	}
	return h.Bytes(), order, nil
}

// writeJSONString writes s quoted as JSON without HTML escaping (as Python's
// json and Rust's serde_json do), so other writers' headers re-encode alike.
func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)       // cannot fail for a string
	b.Truncate(b.Len() - 1) // Encode's newline
}

// WriteFile writes tensors and meta to path atomically (internal/durable: a
// temporary file, fsync, rename, fsync of the directory), so a crash leaves
// either the old file or the new one, never a torn one.
func WriteFile(path string, tensors map[string]*engine.Tensor, meta map[string]string) error {
	// Check the tensors before touching the disk.
	if _, _, err := buildHeader(tensors, meta); err != nil {
		return err
	}
	err := durable.WriteStream(path, func(w io.Writer) error { return Write(w, tensors, meta) })
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}
