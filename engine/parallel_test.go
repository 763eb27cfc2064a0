package engine

import (
	"runtime"
	"testing"
)

type sumTask struct {
	x       []float64
	partial []float64
}

func (s *sumTask) run(part, lo, hi int) {
	for _, v := range s.x[lo:hi] {
		s.partial[part] += v
	}
}

var sumTasks = taskPool{New: func() any { return new(sumTask) }}

func TestParallelForCoversEveryIndexOnceWithoutAllocating(t *testing.T) {
	x := make([]float64, 1001)
	for i := range x {
		x[i] = float64(i)
	}
	partial := make([]float64, 64)
	run := func() {
		task := sumTasks.Get().(*sumTask)
		task.x, task.partial = x, partial
		clear(partial)
		parallelFor(len(x), task)
		sumTasks.Put(task)
	}
	run()
	total := 0.0
	for _, v := range partial {
		total += v
	}
	if total != 1000*1001/2 {
		t.Fatalf("sum %v, want %v", total, 1000*1001/2)
	}
	if a := testing.AllocsPerRun(100, run); a != 0 {
		t.Fatalf("parallelFor allocates %v times per call", a)
	}
}

// countTask counts how often each part runs.
type countTask struct{ runs []int }

func (c *countTask) run(part, _, _ int) { c.runs[part]++ }

// A part whose worker has not taken its last offer (a parked or descheduled
// worker: its channel is still full) is run by the caller, exactly once, and
// the stale offer is dropped when the worker gets to it: each part of each
// call runs once, whoever runs it.
func TestParallelForTakesBackPartsAWorkerHasNotTaken(t *testing.T) {
	if Threads() < 2 {
		t.Skip("skipped: one thread, no workers")
	}
	parallelFor(Threads(), &countTask{runs: make([]int, Threads())}) // every part of this call is claimed
	pool.mu.Lock()
	stale := &countTask{runs: make([]int, Threads())}
	pool.work[0] <- poolJob{task: stale, part: 1, gen: pool.gen} // an offer of that finished call
	pool.mu.Unlock()
	for call := 0; call < 50; call++ {
		c := &countTask{runs: make([]int, Threads())}
		parallelFor(Threads(), c)
		for part, n := range c.runs {
			if n != 1 {
				t.Fatalf("call %d: part %d ran %d times", call, part, n)
			}
		}
	}
	if stale.runs[1] != 0 {
		t.Fatalf("the stale offer ran %d times", stale.runs[1])
	}
}

// Growing the pool while a worker still holds a stale offer is safe (the
// race detector watches): each worker claims through its own word, never
// through the pool's slices, which SetThreads grows.
func TestParallelForSurvivesAGrowingPool(t *testing.T) {
	was := Threads()
	defer SetThreads(was)
	SetThreads(2)
	parallelFor(2, &countTask{runs: make([]int, 2)})
	pool.mu.Lock()
	pool.work[0] <- poolJob{task: &countTask{runs: make([]int, 2)}, part: 1, gen: pool.gen}
	pool.mu.Unlock()
	SetThreads(6)
	for call := 0; call < 20; call++ {
		c := &countTask{runs: make([]int, 6)}
		parallelFor(6, c)
		for part, n := range c.runs {
			if n != 1 {
				t.Fatalf("call %d: part %d ran %d times", call, part, n)
			}
		}
	}
}

// SetThreads keeps a P spare beside the pool's threads; an op never changes
// GOMAXPROCS, and runs its parts once each without the spare too.
func TestPoolKeepsASpareP(t *testing.T) {
	was, procs := Threads(), runtime.GOMAXPROCS(0)
	defer func() { SetThreads(was); runtime.GOMAXPROCS(procs) }()
	runtime.GOMAXPROCS(1)
	SetThreads(3)
	if got := runtime.GOMAXPROCS(0); got != 4 {
		t.Fatalf("3 threads: GOMAXPROCS %d, want 4", got)
	}
	runtime.GOMAXPROCS(2)
	c := &countTask{runs: make([]int, 3)}
	parallelFor(3, c)
	if got := runtime.GOMAXPROCS(0); got != 2 {
		t.Fatalf("an op changed GOMAXPROCS from 2 to %d", got)
	}
	for part, n := range c.runs {
		if n != 1 {
			t.Fatalf("part %d ran %d times", part, n)
		}
	}
	runtime.GOMAXPROCS(8)
	SetThreads(2)
	if got := runtime.GOMAXPROCS(0); got != 8 {
		t.Fatalf("a higher GOMAXPROCS is kept: got %d, want 8", got)
	}
}

// SetThreads while another goroutine runs ops is a change of thread count
// at the next op, not a data race (go test -race).
func TestSetThreadsWhileOpsRun(t *testing.T) {
	was := Threads()
	defer SetThreads(was)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 {
			SetThreads(1 + i%2)
		}
	}()
	task := &countTask{runs: make([]int, 2)}
	for {
		select {
		case <-done:
			return
		default:
			parallelFor(2, task)
		}
	}
}

// ReleaseScratch gives the CPU's free scratch buffers back to the garbage
// collector (a process training models of many shapes kept the largest of
// each), and the next op takes new ones.
func TestReleaseScratchEmptiesTheCPUFreeList(t *testing.T) {
	giveScratch(takeScratch[float32](1 << 10))
	giveScratch(takeScratch[float64](1 << 10))
	ReleaseScratch()
	scratch.mu.Lock()
	n := len(scratch.f32) + len(scratch.f64)
	scratch.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d free buffers kept after ReleaseScratch", n)
	}
	if b := takeScratch[float32](16); len(b) != 16 {
		t.Fatalf("a buffer of %d after ReleaseScratch", len(b))
	}
}
