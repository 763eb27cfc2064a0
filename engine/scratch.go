package engine

import (
	"sync"
	"unsafe"
)

// Scratch buffers (im2col columns, partial sums) come from a small free list:
// the first training step fills it and later steps take the same buffers
// back, so steady-state steps allocate nothing. It is the CPU twin of the
// GPU's caching allocator.
var scratch struct {
	mu  sync.Mutex
	f32 [][]float32
	f64 [][]float64
}

// releaseCPUScratch forgets the free buffers (those in use stay their
// ops'): a process that trains models of many shapes in turn no longer
// keeps the largest of each.
func releaseCPUScratch() {
	scratch.mu.Lock()
	defer scratch.mu.Unlock()
	scratch.f32, scratch.f64 = nil, nil
}

func isFloat64[T Float]() bool {
	var z T
	return unsafe.Sizeof(z) == 8
}

// takeScratch returns a zeroed buffer of n elements; give it back with giveScratch.
func takeScratch[T Float](n int) []T { return takeScratchOf[T](n, true) }

// takeScratchOf is takeScratch, zeroed or, for a caller that writes every
// element before it reads it, not.
func takeScratchOf[T Float](n int, zeroed bool) []T {
	if isFloat64[T]() {
		b := takeFrom(&scratch.f64, n, zeroed)
		return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), len(b))
	}
	b := takeFrom(&scratch.f32, n, zeroed)
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), len(b))
}

func giveScratch[T Float](b []T) {
	if cap(b) == 0 {
		return
	}
	scratch.mu.Lock()
	defer scratch.mu.Unlock()
	p := unsafe.Pointer(unsafe.SliceData(b))
	if isFloat64[T]() {
		scratch.f64 = append(scratch.f64, unsafe.Slice((*float64)(p), cap(b)))
	} else {
		scratch.f32 = append(scratch.f32, unsafe.Slice((*float32)(p), cap(b)))
	}
}

// takeScratchUnzeroed is takeScratch for a caller that writes every
// element it reads (the bf16 products' packed panels): a reused buffer
// keeps what it held.
func takeScratchUnzeroed(n int) []float32 { return takeFrom(&scratch.f32, n, false) }

func takeFrom[E float32 | float64](list *[][]E, n int, zeroed bool) []E {
	scratch.mu.Lock()
	best := -1
	for i, b := range *list {
		if cap(b) >= n && (best < 0 || cap(b) < cap((*list)[best])) {
			best = i
		}
	}
	if best >= 0 {
		b := (*list)[best][:n]
		last := len(*list) - 1
		(*list)[best] = (*list)[last]
		(*list)[last] = nil
		*list = (*list)[:last]
		scratch.mu.Unlock()
		if zeroed {
			clear(b)
		}
		return b
	}
	scratch.mu.Unlock()
	return make([]E, n)
}
