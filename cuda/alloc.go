package cuda

import (
	"errors"
	"fmt"
	"sync"
)

// The caching allocator: freed blocks wait in a free list per size for the
// next request of that size, so a training step that allocates the same
// buffers every time reaches the driver only in its first step. Sizes round
// up to 512 bytes (less rounding, more lists; these are the shapes of one
// model); the emulator keeps exact sizes so AddressSanitizer sees overruns.
var (
	allocMu   sync.Mutex
	freeLists = map[int64][]Ptr{}
	cached    int64
	inUse     int64
	peakInUse int64
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
	if l := freeLists[size]; len(l) > 0 {
		p := l[len(l)-1]
		freeLists[size] = l[:len(l)-1]
		cached -= size
		inUse += size
		peakInUse = max(peakInUse, inUse)
		return p, nil
	}
	p, err := be.alloc(size)
	if err == errOOM {
		held := cached
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
	return p, nil
}

// Free gives memory from Alloc(bytes) back to the cache.
func Free(p Ptr, bytes int64) {
	if p == 0 || be == nil {
		return
	}
	size := roundSize(bytes)
	allocMu.Lock()
	defer allocMu.Unlock()
	freeLists[size] = append(freeLists[size], p)
	cached += size
	inUse -= size
}

// EmptyCache returns every cached block to the driver, and the first error
// the driver gave (a failed free means a broken context).
func EmptyCache() error {
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
