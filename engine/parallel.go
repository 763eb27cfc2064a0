package engine

import (
	"runtime"
	"sync"
	"time"
)

// rangeTask is a piece of work over an index range. Ops implement it on a
// small args struct they take from a taskPool, so handing work to the
// workers allocates nothing.
type rangeTask interface{ run(part, lo, hi int) }

// The worker pool: persistent goroutines fed over channels. Work is split into
// parts by the index count and the thread count alone, never by timing, so a
// result is the same whether the parts run in parallel or one after another
// (as they do when another goroutine holds the pool).
var pool struct {
	mu      sync.Mutex // held by the one caller using the workers
	threads int
	work    []chan poolJob
	wg      sync.WaitGroup
	once    sync.Once
}

type poolJob struct {
	task         rangeTask
	part, lo, hi int
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
		ch := make(chan poolJob, 1)
		pool.work = append(pool.work, ch)
		go worker(ch)
	}
	pool.threads = n
}

// workerSpin is how long an idle worker keeps polling before it parks:
// waking a parked goroutine takes 12–45 µs here, longer than many of the ops
// of a small model's step, which come back to back.
const workerSpin = 50 * time.Microsecond

func worker(ch chan poolJob) {
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
				if i == 0 {
					start = time.Now()
				} else if i%32 == 0 && time.Since(start) > workerSpin {
					if j, ok = <-ch; !ok {
						return
					}
					continue
				}
				runtime.Gosched()
			}
		}
		j.task.run(j.part, j.lo, j.hi)
		pool.wg.Done()
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
	pool.wg.Add(p - 1)
	for i := 1; i < p; i++ {
		pool.work[i-1] <- poolJob{task, i, i * n / p, (i + 1) * n / p}
	}
	task.run(0, 0, n/p)
	pool.wg.Wait()
	pool.mu.Unlock()
}
