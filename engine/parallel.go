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
	mu        sync.Mutex   // held by the one caller using the workers
	threads   atomic.Int32 // written under mu, read by any op (SetThreads while another goroutine trains)
	work      []chan poolJob
	claim     []*atomic.Uint64 // per worker, its own: the job's generation·2, +1 once claimed
	gen       uint64           // bumped per parallelFor (under mu)
	pending   atomic.Int32     // claimed parts still running
	lastYield time.Time        // the caller's last, under mu
	once      sync.Once
}

type poolJob struct {
	task         rangeTask
	part, lo, hi int
	gen          uint64
}

// SetThreads sets how many threads CPU ops use (default GOMAXPROCS, as it
// was before the pool raised it: see spareP). Call it before the first op;
// results are bit-identical run after run for a fixed thread count.
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
	return int(pool.threads.Load())
}

func startPool(n int) {
	spareP(n)
	for len(pool.work) < n-1 {
		ch, claim := make(chan poolJob, 1), new(atomic.Uint64)
		pool.work, pool.claim = append(pool.work, ch), append(pool.claim, claim)
		go worker(claim, ch) // the worker never reads pool's slices, which grow under mu
	}
	pool.threads.Store(int32(n))
}

// spareP keeps one more P than there are threads. The threads spend most of
// a step in long cgo calls, and while every P is in one, sysmon takes a P
// from a call that has lasted 20 µs and starts a spinning M to look for work:
// on a machine with as many cores as threads that M, and sysmon waking every
// 20 µs to do it again, take turns with the kernels on the cores. With a P
// left idle, sysmon leaves the calls alone (runtime.retake). On a 2-core Zen
// 4, cnn's 32-channel 3×3 convolution (28×28, batch 64) on two threads went
// from 110–130 to 140–153 GFLOP/s, and cnn's training step from 785 to 1,041
// images/s (medians of 5 alternating runs).
//
// Only SetThreads and the pool's start set it, never an op: where GOMAXPROCS
// is lowered later (testing does so per benchmark and in AllocsPerRun), the
// ops run without the spare until SetThreads is called again.
func spareP(n int) {
	if runtime.GOMAXPROCS(0) <= n {
		runtime.GOMAXPROCS(n + 1)
	}
}

// yieldP gives up the P once per yieldEvery where the pool's goroutines wait
// (a worker for work, the caller for parts or as an op starts), so that
// sysmon sees them pass through the scheduler and neither preempts them nor
// takes the P of one in a cgo call (after which it polls every 20 µs again).
// More often costs more: with the spare P idle, each Gosched wakes an M that
// finds nothing to do and sleeps again (lenet −19% when the spinners yielded
// every 64 polls). last is the goroutine's last yield.
func yieldP(last *time.Time) {
	if time.Since(*last) > yieldEvery {
		runtime.Gosched()
		*last = time.Now()
	}
}

// yieldEvery leaves room under sysmon's 10 ms time slice for a part of an op
// between two yields (at 8 ms, cnn's 3.5 ms parts still got preempted).
const yieldEvery = 2 * time.Millisecond

// workerSpin is how long an idle worker keeps polling before it parks:
// waking a parked goroutine takes 12–45 µs here, longer than many of the ops
// of a small model's step, which come back to back.
const workerSpin = 50 * time.Microsecond

func worker(claim *atomic.Uint64, ch chan poolJob) {
	lastYield := time.Now()
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
				// Poll; every 64th time see whether to park or to yield the
				// P (both read the clock, too dear to read on every poll).
				if i == 0 {
					start = time.Now()
					yieldP(&lastYield)
				} else if i%64 == 0 {
					if time.Since(start) > workerSpin {
						if j, ok = <-ch; !ok {
							return
						}
						continue
					}
					yieldP(&lastYield)
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
	yieldP(&pool.lastYield)
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
			yieldP(&pool.lastYield)
		}
	}
	pool.mu.Unlock()
}
