package engine

import "runtime"

// BenchThreads gives the worker pool the thread count a benchmark runs at,
// with its spare P (parallel.go's spareP). testing sets GOMAXPROCS to the
// -cpu value before each run of a benchmark, taking the spare away, and
// calls the benchmark's function several times (b.N rising): GOMAXPROCS
// one above Threads() means the spare is still in place, and taking that
// for the thread count would add a thread on every call. (The one case it
// misreads is -cpu n+1 run right after -cpu n.)
func BenchThreads() {
	if n := runtime.GOMAXPROCS(0); n != Threads()+1 {
		SetThreads(n)
	}
}
