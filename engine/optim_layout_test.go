package engine

import (
	"testing"
	"unsafe"
)

// The chunk tables are read by kernels/optim.cu as its structs: the sizes
// and offsets must be the C ones (three or four 8-byte pointers, a long
// long, a float and padding).
func TestOptimChunkLayout(t *testing.T) {
	var s sgdChunk
	var a adamWChunk
	for _, c := range []struct {
		what      string
		got, want uintptr
	}{
		{"sizeof kiln_sgd_chunk", unsafe.Sizeof(s), 40},
		{"offsetof kiln_sgd_chunk.n", unsafe.Offsetof(s.n), 24},
		{"offsetof kiln_sgd_chunk.wd", unsafe.Offsetof(s.wd), 32},
		{"sizeof kiln_adamw_chunk", unsafe.Sizeof(a), 48},
		{"offsetof kiln_adamw_chunk.n", unsafe.Offsetof(a.n), 32},
		{"offsetof kiln_adamw_chunk.decay", unsafe.Offsetof(a.decay), 40},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.what, c.got, c.want)
		}
	}
}
