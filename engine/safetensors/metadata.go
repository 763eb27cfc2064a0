package safetensors

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/kiln-ml/kiln/internal/userfile"
)

// ReadMetadata reads only the header of the safetensors file at path and
// returns its __metadata__ (empty when it has none), checking the header as
// ReadFile does but not the tensors' bytes: what a program needs to know what
// a file is without loading it.
func ReadMetadata(path string) (map[string]string, error) {
	f, _, err := userfile.Open(path)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	defer f.Close()
	var size [8]byte
	if _, err := io.ReadFull(f, size[:]); err != nil {
		return nil, withFile(path, formatErr("", "truncated: no 8-byte header length (%v)", err))
	}
	n := binary.LittleEndian.Uint64(size[:])
	if n > MaxHeaderSize {
		return nil, withFile(path, formatErr("", "header length %d exceeds the %d-byte limit", n, MaxHeaderSize))
	}
	header, err := io.ReadAll(io.LimitReader(f, int64(n)))
	if err != nil {
		return nil, fmt.Errorf("safetensors: %s: %w", path, err)
	}
	if uint64(len(header)) < n {
		return nil, withFile(path, formatErr("", "header length %d exceeds the %d bytes after it (truncated file?)", n, len(header)))
	}
	_, meta, err := parseHeader(header)
	if err != nil {
		return nil, withFile(path, err)
	}
	if meta == nil {
		meta = map[string]string{}
	}
	return meta, nil
}
