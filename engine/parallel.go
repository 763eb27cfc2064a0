package engine

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// rangeTask is a piece of work over an index range. Ops implement it on a
// small args struct they take from a taskPool, so handing work to the
// workers allocates nothing.
type rangeTask interface{ run(part, lo, hi int) }

// The worker pool: persistent goroutines fed over channels, the one set of
// threads every CPU op runs on (the C kernels' products included, through
// cgo calls from the workers). Work is split into parts by the index count
// and the thread count alone, never by timing, so a result is the same
// whether the parts run in parallel or one after another (as they do when
// another goroutine holds the pool).
//
// Part 0 runs on the caller. Each other part is offered to a worker and
// claimed by whoever gets to it first: the worker, or the caller once its own
// part is done, so a worker that is parked or descheduled never stalls a
// small op (waking a parked goroutine takes 12–45 µs on a virtual machine).
// The caller then spins, not parks, until the claimed parts finish.
var pool struct {
	mu      sync.Mutex // held by the one caller using the workers
	threads int
	work    []chan poolJob
	claim   []*atomic.Uint64 // per worker, its own: the job's generation·2, +1 once claimed
	gen     uint64           // bumped per parallelFor (under mu)
	pending atomic.Int32     // claimed parts still running
	once    sync.Once
}

type poolJob struct {
	task         rangeTask
	part, lo, hi int
	gen          uint64
}

// SetThreads sets how many threads CPU ops use (default GOMAXPROCS). Call it
// before the first op; results are bit-identical run after run for a fixed
// thread count.
func SetThreads(n int) {
	if n < 1 {
		n = 1
	}
	pool.mu.Lock()
	defer pool.mu.Unlock()
	pool.once.Do(func() {})
	startPool(n)
}

// Threads is the number of threads CPU ops use.
func Threads() int {
	pool.once.Do(func() { startPool(runtime.GOMAXPROCS(0)) })
	return pool.threads
}

func startPool(n int) {
	for len(pool.work) < n-1 {
		ch, claim := make(chan poolJob, 1), new(atomic.Uint64)
		pool.work, pool.claim = append(pool.work, ch), append(pool.claim, claim)
		go worker(claim, ch) // the worker never reads pool's slices, which grow under mu
	}
	pool.threads = n
}

// workerSpin is how long an idle worker keeps polling before it parks:
// waking a parked goroutine takes 12–45 µs here, longer than many of the ops
// of a small model's step, which come back to back.
const workerSpin = 50 * time.Microsecond

func worker(claim *atomic.Uint64, ch chan poolJob) {
	for {
		var j poolJob
		ok := false
		var start time.Time
		for i := 0; !ok; i++ {
			select {
			case j, ok = <-ch:
				if !ok {
					return
				}
			default:
				// Poll; every 64th time yield the P (a goroutine may be
				// waiting for it: Gosched takes the scheduler's lock, too
				// dear to call on every poll) and see whether to park.
				if i == 0 {
					start = time.Now()
				} else if i%64 == 0 {
					if time.Since(start) > workerSpin {
						if j, ok = <-ch; !ok {
							return
						}
						continue
					}
					runtime.Gosched()
				}
			}
		}
		if claim.CompareAndSwap(j.gen*2, j.gen*2+1) {
			j.task.run(j.part, j.lo, j.hi)
			pool.pending.Add(-1)
		}
	}
}

// parts is how many parts parallelFor splits n items into.
func parts(n int) int {
	p := Threads()
	if n < p {
		p = n
	}
	return max(p, 1)
}

// parallelFor runs task over [0, n) in parts(n) contiguous parts; part i covers
// [i·n/p, (i+1)·n/p).
func parallelFor(n int, task rangeTask) {
	p := parts(n)
	if p <= 1 || !pool.mu.TryLock() {
		for i := 0; i < p; i++ {
			task.run(i, i*n/p, (i+1)*n/p)
		}
		return
	}
	pool.gen++
	g := pool.gen
	for i := 1; i < p; i++ {
		pool.claim[i-1].Store(g * 2)
		select {
		case pool.work[i-1] <- poolJob{task, i, i * n / p, (i + 1) * n / p, g}:
		default: // the worker has not taken its last offer yet: the caller will run this part
		}
	}
	task.run(0, 0, n/p)
	for i := 1; i < p; i++ {
		if pool.claim[i-1].CompareAndSwap(g*2, g*2+1) {
			task.run(i, i*n/p, (i+1)*n/p)
		} else {
			pool.pending.Add(1) // the worker's: it subtracts 1 when done, maybe already
		}
	}
	for i := 1; pool.pending.Load() != 0; i++ {
		if i%64 == 0 {
			runtime.Gosched() // lets a worker on this P run (GOMAXPROCS below the threads)
		}
	}
	pool.mu.Unlock()
}
