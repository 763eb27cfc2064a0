package data

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/kiln-ml/kiln/internal/userfile"
)

// IDX files (the MNIST format): a big-endian header — two zero bytes, the
// element type (0x08 for unsigned bytes), the number of dimensions — then one
// 32-bit size per dimension and the data. Images are 0x00000803 (N, rows,
// cols); labels are 0x00000801 (N).

const (
	idxImagesMagic = 0x00000803
	idxLabelsMagic = 0x00000801

	// maxDeflateRatio bounds how much data a deflate stream can expand to
	// (the format's limit is about 1032:1); a header that declares more than
	// this over the compressed size cannot be honest, so nothing that large
	// is allocated up front.
	maxDeflateRatio = 1100

	// maxIDXBytes caps the declared payload of one file (16 GiB), and the
	// file itself.
	maxIDXBytes = 1 << 34
)

// readIDX reads an IDX file (gzipped or not) of ndims dimensions.
func readIDX(path string, ndims int) (dims []int, payload []byte, err error) {
	raw, err := userfile.ReadFile(path, maxIDXBytes)
	if err != nil {
		return nil, nil, ioErr(path, err)
	}
	dims, payload, err = decodeIDX(raw, ndims)
	if err != nil {
		return nil, nil, &FileError{Path: path, Problem: err.Error()}
	}
	return dims, payload, nil
}

// ioProblem words an error from opening or reading a file without repeating
// the path, which the FileError already names.
func ioProblem(err error) string {
	var pe *os.PathError
	var ue *userfile.Error
	switch {
	case errors.As(err, &ue):
		return ue.Err.Error()
	case errors.As(err, &pe):
		return fmt.Sprintf("cannot %s: %v", pe.Op, pe.Err)
	}
	return err.Error()
}

// decodeIDX parses the bytes of an IDX file, gzipped or not, that must have
// ndims dimensions. The error does not name the file.
func decodeIDX(raw []byte, ndims int) (dims []int, payload []byte, err error) {
	gzipped := len(raw) >= 2 && raw[0] == 0x1f && raw[1] == 0x8b
	var r io.Reader = bytes.NewReader(raw)
	if gzipped {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, gzipProblem(err, 0)
		}
		r = zr
	}
	read := 0 // decompressed bytes consumed so far
	var hdr [4]byte
	if n, err := readFull(r, hdr[:]); err != nil {
		return nil, nil, headerProblem(err, n, gzipped, read)
	}
	read += 4
	if err := checkIDXMagic(hdr, ndims); err != nil {
		return nil, nil, err
	}
	dimBytes := make([]byte, 4*ndims)
	if n, err := readFull(r, dimBytes); err != nil {
		return nil, nil, headerProblem(err, n, gzipped, read)
	}
	read += len(dimBytes)
	dims, total, err := idxDims(dimBytes)
	if err != nil {
		return nil, nil, err
	}
	short := func(got int) error {
		return fmt.Errorf("too few items: the header declares %s (%d bytes of data) but the file holds %d bytes of data", dimString(dims), total, got)
	}
	if !gzipped {
		body := raw[read:]
		if len(body) < total {
			return nil, nil, short(len(body))
		}
		if len(body) > total {
			return nil, nil, fmt.Errorf("%d bytes of unexpected data after the %d the header declares (%s)", len(body)-total, total, dimString(dims))
		}
		return dims, body, nil
	}
	if total > maxDeflateRatio*len(raw)+4096 {
		// Cannot be true: count what is there rather than allocate it.
		n, err := io.Copy(io.Discard, r)
		if err != nil {
			return nil, nil, gzipProblem(err, read+int(n))
		}
		return nil, nil, short(int(n))
	}
	payload = make([]byte, total)
	n, err := readFull(r, payload)
	if err == io.EOF {
		return nil, nil, short(n)
	}
	if err != nil {
		return nil, nil, gzipProblem(err, read+n)
	}
	// Read to the end: the gzip checksum is verified there, and trailing data
	// is an error.
	extra, err := io.Copy(io.Discard, r)
	if err != nil {
		return nil, nil, gzipProblem(err, read+total+int(extra))
	}
	if extra > 0 {
		return nil, nil, fmt.Errorf("%d bytes of unexpected data after the %d the header declares (%s)", extra, total, dimString(dims))
	}
	return dims, payload, nil
}

// checkIDXMagic refuses a header that is not of unsigned bytes in ndims
// dimensions, saying which part is wrong.
func checkIDXMagic(hdr [4]byte, ndims int) error {
	magic := binary.BigEndian.Uint32(hdr[:])
	want := uint32(0x0800 | ndims)
	if magic == want {
		return nil
	}
	what := fmt.Sprintf("%d dimensions, want %d", hdr[3], ndims)
	if hdr[0] != 0 || hdr[1] != 0 {
		what = "not an IDX file"
	} else if hdr[2] != 0x08 {
		what = fmt.Sprintf("element type 0x%02x, not unsigned bytes", hdr[2])
	}
	return fmt.Errorf("wrong magic number 0x%08x, want 0x%08x (%s)", magic, want, what)
}

// idxDims reads the header's dimensions (big-endian uint32s) and their
// product, refusing an empty or impossibly large size.
func idxDims(dimBytes []byte) (dims []int, total int, err error) {
	dims = make([]int, len(dimBytes)/4)
	total = 1
	for i := range dims {
		dims[i] = int(binary.BigEndian.Uint32(dimBytes[4*i:]))
		if dims[i] == 0 {
			return nil, 0, fmt.Errorf("header declares a size of 0 in dimension %d: no items", i)
		}
		if dims[i] > maxIDXBytes/total {
			return nil, 0, fmt.Errorf("header declares an impossible size %s", dimString(dims[:i+1]))
		}
		total *= dims[i]
	}
	return dims, total, nil
}

// readFull reads len(buf) bytes. Unlike io.ReadFull it returns io.EOF for a
// clean end of data however much was read, so a stream that ends early can be
// told apart from a damaged one (io.ErrUnexpectedEOF from the decompressor).
func readFull(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			if n == len(buf) && err == io.EOF {
				return n, nil
			}
			return n, err
		}
	}
	return n, nil
}

func headerProblem(err error, n int, gzipped bool, read int) error {
	if err == io.EOF {
		return fmt.Errorf("too short for an IDX header (%d bytes)", read+n)
	}
	if gzipped {
		return gzipProblem(err, read+n)
	}
	return err
}

// gzipProblem words a decompression error; at is how many decompressed bytes
// came out before it.
func gzipProblem(err error, at int) error {
	var corrupt flate.CorruptInputError
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("truncated gzip data: the compressed stream ends after %d bytes of data", at)
	case errors.Is(err, gzip.ErrChecksum):
		return fmt.Errorf("corrupt gzip data: checksum mismatch (after %d bytes of data)", at)
	case errors.Is(err, gzip.ErrHeader):
		return fmt.Errorf("corrupt gzip data: bad gzip header after %d bytes of data", at)
	case errors.As(err, &corrupt):
		return fmt.Errorf("corrupt gzip data: invalid deflate data at compressed offset %d (after %d bytes of data)", int64(corrupt), at)
	case err == io.EOF:
		return fmt.Errorf("truncated gzip data: empty stream")
	}
	return fmt.Errorf("corrupt gzip data: %v (after %d bytes of data)", err, at)
}

func dimString(dims []int) string {
	var b strings.Builder
	for i, d := range dims {
		if i > 0 {
			b.WriteString("×")
		}
		fmt.Fprint(&b, d)
	}
	return b.String()
}
