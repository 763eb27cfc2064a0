package cuda

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"sync"
)

// The caching allocator: freed blocks wait in a free list per size for the
// next request of that size, so a training step that allocates the same
// buffers every time reaches the driver only in its first step. Sizes round
// up to 512 bytes (less rounding, more lists; these are the shapes of one
// model); the emulator keeps exact sizes so AddressSanitizer sees overruns.
//
// KILN_CUDA_NOCACHE=1 turns the cache off: Free hands each block straight
// back to the driver (the emulator: to the C heap), so that a use after
// release is a use after free that AddressSanitizer reports, instead of a
// read of some other tensor's block. For debugging only: it is slow on a GPU.
var (
	allocMu   sync.Mutex
	freeLists = map[int64][]Ptr{}
	live      = map[Ptr]int64{} // blocks handed out, by base: their sizes
	cached    int64
	inUse     int64
	peakInUse int64
	noCache   = os.Getenv("KILN_CUDA_NOCACHE") == "1"
	freeErr   error // a failed free without the cache, for the next Alloc
)

func roundSize(bytes int64) int64 {
	if bytes <= 0 {
		bytes = 1
	}
	if be != nil && be.exact() {
		return bytes
	}
	return (bytes + 511) &^ 511
}

// Alloc returns device memory of at least bytes bytes, contents undefined.
// When the device is full, the cache is released and the request tried once
// more before an *OutOfMemoryError.
func Alloc(bytes int64) (Ptr, error) {
	if err := ready(); err != nil {
		return 0, err
	}
	size := roundSize(bytes)
	allocMu.Lock()
	defer allocMu.Unlock()
	if err := freeErr; err != nil {
		freeErr = nil
		return 0, fmt.Errorf("cuda: an earlier free failed: %w", err)
	}
	if l := freeLists[size]; len(l) > 0 {
		p := l[len(l)-1]
		freeLists[size] = l[:len(l)-1]
		cached -= size
		inUse += size
		peakInUse = max(peakInUse, inUse)
		live[p] = size
		return p, nil
	}
	p, err := be.alloc(size)
	if err == errOOM {
		held := cached
		// Cached blocks may be named by a step's held-back operations
		// (graph.go): they run before the blocks go.
		if err := settle("the cache released for an allocation"); err != nil {
			return 0, err
		}
		if err := emptyCacheLocked(); err != nil {
			return 0, fmt.Errorf("cuda: releasing the cache to retry an allocation of %s: %w", human(bytes), err)
		}
		p, err = be.alloc(size)
		if err == errOOM {
			free, total, infoErr := be.memInfo()
			oom := &OutOfMemoryError{Requested: bytes, Free: free, Total: total, Cached: held}
			if infoErr != nil {
				return 0, errors.Join(oom, infoErr) // the figures are not the device's
			}
			return 0, oom
		}
	}
	if err != nil {
		return 0, err
	}
	inUse += size
	peakInUse = max(peakInUse, inUse)
	live[p] = size
	return p, nil
}

// blockOf is the block that holds [p, p+bytes): [base, base+size) of an
// allocation, or the range itself where none holds it.
func blockOf(p Ptr, bytes int64) (lo, hi Ptr) {
	allocMu.Lock()
	defer allocMu.Unlock()
	if size, ok := live[p]; ok {
		return p, p + Ptr(size)
	}
	for base, size := range live {
		if p >= base && p < base+Ptr(size) {
			return base, base + Ptr(size)
		}
	}
	return p, p + Ptr(bytes)
}

// Free gives memory from Alloc(bytes) back to the cache (to the device with
// KILN_CUDA_NOCACHE=1, where a failed free is the next Alloc's error).
func Free(p Ptr, bytes int64) {
	if p == 0 || be == nil {
		return
	}
	size := roundSize(bytes)
	var settled error
	if noCache {
		// A step's held-back operations may name the block (graph.go).
		settled = settle("a block going back to the driver")
	}
	allocMu.Lock()
	defer allocMu.Unlock()
	inUse -= size
	delete(live, p)
	if noCache {
		if err := cmp.Or(settled, be.free(p)); err != nil && freeErr == nil {
			freeErr = err
		}
		return
	}
	freeLists[size] = append(freeLists[size], p)
	cached += size
}

// EmptyCache returns every cached block to the driver, and the first error
// the driver gave (a failed free means a broken context).
func EmptyCache() error {
	if err := settle("EmptyCache"); err != nil {
		return err
	}
	allocMu.Lock()
	defer allocMu.Unlock()
	return emptyCacheLocked()
}

func emptyCacheLocked() error {
	var first error
	for size, l := range freeLists {
		for _, p := range l {
			if err := be.free(p); err != nil && first == nil {
				first = err
			}
		}
		delete(freeLists, size)
	}
	cached = 0
	return first
}

// MemoryStats is the allocator's view: bytes handed out now, at most so far,
// and held in the cache.
type MemoryStats struct{ InUse, Peak, Cached int64 }

// Memory returns the allocator's counters.
func Memory() MemoryStats {
	allocMu.Lock()
	defer allocMu.Unlock()
	return MemoryStats{InUse: inUse, Peak: peakInUse, Cached: cached}
}
