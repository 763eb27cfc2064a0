package engine

import "sync"

// taskPool recycles the small task structs that ops hand to parallelFor. It
// has sync.Pool's Get/Put/New shape but never drops what it holds (sync.Pool
// empties at every GC and per-P caches refill after GOMAXPROCS changes), so
// a steady-state training step provably allocates nothing.
type taskPool struct {
	New  func() any
	mu   sync.Mutex
	free []any
}

// Get returns a recycled task, or a new one.
func (p *taskPool) Get() any {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		v := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return v
	}
	p.mu.Unlock()
	return p.New()
}

// Put hands a task back for reuse.
func (p *taskPool) Put(v any) {
	p.mu.Lock()
	p.free = append(p.free, v)
	p.mu.Unlock()
}
