// Command mpitest runs the mpi package against real MPI ranks for its tests
// (mpi/mpi_test.go starts it under mpirun). Each rank prints what the test
// compares across ranks and runs, and exits non-zero on the first failure.
//
//	mpitest check   every collective, checked against what it must give
//	mpitest kill    the last rank SIGKILLs itself while the others all-reduce
//	mpitest init    Init only: a build without MPI must refuse under mpirun
//	mpitest bench   time float32 all-reduces of gradient-sized buffers (not a test)
package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kiln-ml/kiln/mpi"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: mpitest check|kill|init|bench")
		os.Exit(2)
	}
	w, err := mpi.Init()
	if err != nil {
		fmt.Println("init error:", err)
		os.Exit(1)
	}
	switch os.Args[1] {
	case "init":
		fmt.Printf("initialized rank %d size %d\n", w.Rank(), w.Size())
	case "check":
		if err := check(w); err != nil {
			fmt.Printf("rank %d: FAIL: %v\n", w.Rank(), err)
			w.Abort(1)
		}
	case "kill":
		kill(w)
	case "bench":
		if err := bench(w); err != nil {
			fmt.Printf("rank %d: %v\n", w.Rank(), err)
			w.Abort(1)
		}
	}
	if err := w.Finalize(); err != nil {
		fmt.Println("finalize:", err)
		os.Exit(1)
	}
}

func check(w *mpi.World) error {
	r, n := w.Rank(), w.Size()
	fmt.Printf("rank %d size %d local %d %d\n", r, n, w.LocalRank(), w.LocalSize())
	steps := []func(*mpi.World) error{checkSettings, checkGoSignals, checkExactSums,
		checkAwkwardSums, checkNonblockingSums, checkBroadcast, checkGather, checkAgree, checkOtherThread}
	for _, step := range steps {
		if err := step(w); err != nil {
			return err
		}
	}
	if err := w.Barrier(); err != nil {
		return err
	}
	if err := w.Finalize(); err != nil {
		return err
	}
	if err := w.AllreduceSumFloat32(make([]float32, 1)); err == nil {
		return errors.New("AllreduceSumFloat32 after Finalize returned no error")
	}
	fmt.Printf("rank %d ok\n", r)
	return nil
}

// checkSettings shows that Open MPI took the all-reduce algorithm the package
// pins before MPI_Init.
func checkSettings(w *mpi.World) error {
	dyn, err := cvar("coll_tuned_use_dynamic_rules")
	if err != nil {
		return err
	}
	alg, err := cvar("coll_tuned_allreduce_algorithm")
	if err != nil {
		return err
	}
	ialg, err := cvar("coll_libnbc_iallreduce_algorithm")
	if err != nil {
		return err
	}
	fmt.Printf("rank %d settings dynamic %d allreduce %d iallreduce %d\n", w.Rank(), dyn&0xff, alg, ialg)
	if dyn&0xff == 0 || alg != 4 || ialg != 1 {
		return fmt.Errorf("Open MPI runs with use_dynamic_rules=%d allreduce_algorithm=%d iallreduce_algorithm=%d, want 1, 4 and 1",
			dyn&0xff, alg, ialg)
	}
	return nil
}

// checkGoSignals: Open MPI installs handlers for SIGSEGV and friends unless
// one is there; Go's must survive Init, or a nil dereference kills the rank
// instead of panicking.
func checkGoSignals(*mpi.World) (err error) {
	defer func() {
		if recover() == nil {
			err = errors.New("nil dereference did not panic")
		}
	}()
	var p *int
	return fmt.Errorf("read %d through nil", *p)
}

// checkExactSums: integers stay exact in float32 below 2^24, so the sum is known.
func checkExactSums(w *mpi.World) error {
	r, n := w.Rank(), w.Size()
	for _, length := range []int{0, 1, 3, 1000, 70001} {
		f32 := make([]float32, length)
		f64 := make([]float64, length)
		for i := range f32 {
			f32[i] = float32(r*100000 + i%1000)
			f64[i] = float64(r)*1e12 + float64(i)
		}
		if err := w.AllreduceSumFloat32(f32); err != nil {
			return err
		}
		if err := w.AllreduceSumFloat64(f64); err != nil {
			return err
		}
		for i := range f32 {
			want32 := float32(100000*n*(n-1)/2 + n*(i%1000))
			want64 := 1e12*float64(n*(n-1)/2) + float64(n*i)
			if f32[i] != want32 || f64[i] != want64 {
				return fmt.Errorf("length %d element %d: sums %v %v, want %v %v", length, i, f32[i], f64[i], want32, want64)
			}
		}
	}
	return nil
}

// checkAwkwardSums prints a hash of sums whose last bits depend on the order
// of addition (signs and magnitudes mixed): the test compares them across
// ranks and runs. Lengths cover below the world size and big enough for Open
// MPI's ring to cut blocks.
func checkAwkwardSums(w *mpi.World) error {
	r, n := w.Rank(), w.Size()
	for _, length := range []int{1, 2, 7, 1000, 100003} {
		f32 := make([]float32, length)
		f64 := make([]float64, length)
		want := make([]float64, length)
		mass := make([]float64, length) // sum of magnitudes: rounding is relative to it
		for q := range n {
			rng := rand.New(rand.NewPCG(uint64(q), uint64(length)))
			for i := range f32 {
				v := awkward(rng)
				want[i] += float64(float32(v))
				mass[i] += math.Abs(v)
				if q == r {
					f32[i], f64[i] = float32(v), v
				}
			}
		}
		if err := w.AllreduceSumFloat32(f32); err != nil {
			return err
		}
		if err := w.AllreduceSumFloat64(f64); err != nil {
			return err
		}
		for i := range f32 {
			if d := math.Abs(float64(f32[i]) - want[i]); d > 1e-6*float64(n)*mass[i] {
				return fmt.Errorf("awkward length %d element %d: %v, want about %v", length, i, f32[i], want[i])
			}
		}
		fmt.Printf("rank %d awkward %d float32 %x float64 %x\n", r, length, hash(f32), hash(f64))
	}
	return nil
}

// checkNonblockingSums starts two all-reduces at once, as overlapped
// gradient buckets do, moves them on with Test while "computing", and checks
// their sums against the blocking all-reduce's: the hashes must agree
// across ranks and runs as the blocking sums' do.
func checkNonblockingSums(w *mpi.World) error {
	r, n := w.Rank(), w.Size()
	for _, length := range []int{1, 7, 100003} {
		bufs := [2][]float32{make([]float32, length), make([]float32, length)}
		for b := range bufs {
			rng := rand.New(rand.NewPCG(uint64(r), uint64(length+b)))
			for i := range bufs[b] {
				bufs[b][i] = float32(awkward(rng))
			}
		}
		blocking, mass := slices.Clone(bufs[1]), make([]float32, length)
		for i, v := range bufs[1] {
			mass[i] = float32(math.Abs(float64(v))) // rounding is relative to the sum of magnitudes
		}
		if err := w.AllreduceSumFloat32(blocking); err != nil {
			return err
		}
		if err := w.AllreduceSumFloat32(mass); err != nil {
			return err
		}
		var pending [2]*mpi.Pending
		for b := range bufs {
			p, err := w.IallreduceSumFloat32(bufs[b])
			if err != nil {
				return err
			}
			pending[b] = p
		}
		for spin := 0; spin < 100; spin++ {
			if _, err := pending[0].Test(); err != nil {
				return err
			}
		}
		for _, p := range pending {
			if err := p.Wait(); err != nil {
				return err
			}
		}
		for i, v := range bufs[1] {
			if d := math.Abs(float64(v - blocking[i])); d > 1e-6*float64(n)*float64(mass[i]) {
				return fmt.Errorf("nonblocking length %d element %d: %v, the blocking sum %v", length, i, v, blocking[i])
			}
		}
		fmt.Printf("rank %d isum %d float32 %x %x\n", r, length, hash(bufs[0]), hash(bufs[1]))
	}
	return nil
}

// awkward is a value of random sign and magnitude between 1e-6 and 1e6.
func awkward(rng *rand.Rand) float64 {
	v := math.Pow(10, rng.Float64()*12-6) * (1 + rng.Float64())
	if rng.IntN(2) == 0 {
		return -v
	}
	return v
}

func hash[T float32 | float64](s []T) []byte {
	h := sha256.New()
	for _, v := range s {
		fmt.Fprint(h, math.Float64bits(float64(v)), " ")
	}
	return h.Sum(nil)[:8]
}

func checkBroadcast(w *mpi.World) error {
	r, n := w.Rank(), w.Size()
	root := n - 1
	buf := make([]float32, 5001)
	for i := range buf {
		buf[i] = float32(r*10000 + i)
	}
	if err := w.BroadcastFloat32(buf, root); err != nil {
		return err
	}
	for i, v := range buf {
		if v != float32(root*10000+i) {
			return fmt.Errorf("broadcast element %d is %v, want root %d's %v", i, v, root, root*10000+i)
		}
	}
	var mine []byte
	if r == 0 {
		mine = []byte("the configuration, from rank 0")
	}
	got, err := w.BroadcastBytes(mine, 0)
	if err != nil {
		return err
	}
	if string(got) != "the configuration, from rank 0" {
		return fmt.Errorf("BroadcastBytes gave %q", got)
	}
	err = w.BroadcastFloat32(buf, 99)
	fmt.Printf("rank %d bad root: %v\n", r, err)
	if err == nil || !strings.Contains(err.Error(), "MPI_ERR_ROOT") {
		return fmt.Errorf("broadcast from root 99 of %d: error %v, want MPI's MPI_ERR_ROOT", n, err)
	}
	return nil
}

func checkGather(w *mpi.World) error {
	r, n := w.Rank(), w.Size()
	all, err := w.AllgatherBytes(slices.Repeat([]byte{byte(r)}, r))
	if err != nil {
		return err
	}
	if len(all) != n {
		return fmt.Errorf("AllgatherBytes gave %d slices for %d ranks", len(all), n)
	}
	for q, b := range all {
		if !slices.Equal(b, slices.Repeat([]byte{byte(q)}, q)) {
			return fmt.Errorf("AllgatherBytes: rank %d's bytes came as %v", q, b)
		}
	}
	return nil
}

func checkAgree(w *mpi.World) error {
	r, n := w.Rank(), w.Size()
	same := sha256.Sum256([]byte("flags and data"))
	if err := w.Agree("the configuration", same[:]); err != nil {
		return fmt.Errorf("equal hashes: %w", err)
	}
	mine := same
	if r == n-1 {
		mine = sha256.Sum256([]byte("other flags"))
	}
	err := w.Agree("the configuration", mine[:])
	fmt.Printf("rank %d disagree: %v\n", r, err)
	var d *mpi.DisagreeError
	if !errors.As(err, &d) || !slices.Equal(d.Ranks, []int{n - 1}) {
		return fmt.Errorf("rank %d differing: Agree gave %v, want rank %d named", n-1, err, n-1)
	}
	return nil
}

// checkOtherThread all-reduces from a goroutine pinned to another OS thread
// than Init's: MPI_THREAD_SERIALIZED allows it, and Go does it all the time.
func checkOtherThread(w *mpi.World) error {
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		buf := []float32{1}
		err := w.AllreduceSumFloat32(buf)
		if err == nil && buf[0] != float32(w.Size()) {
			err = fmt.Errorf("sum of ones from another thread: %v", buf[0])
		}
		done <- err
	}()
	return <-done
}

// kill: the last rank dies by SIGKILL while the others wait in an
// all-reduce; mpirun must end them.
func kill(w *mpi.World) {
	r, n := w.Rank(), w.Size()
	if err := w.Barrier(); err != nil {
		fmt.Println("barrier:", err)
		os.Exit(1)
	}
	if r == n-1 {
		time.Sleep(300 * time.Millisecond)
		fmt.Printf("rank %d killing itself\n", r)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Minute)
	}
	fmt.Printf("rank %d pid %d all-reducing\n", r, os.Getpid())
	for {
		if err := w.AllreduceSumFloat32(make([]float32, 1<<16)); err != nil {
			fmt.Printf("rank %d: all-reduce failed: %v\n", r, err)
			os.Exit(3)
		}
	}
}

// bench times all-reduces of LeNet-5's (61,706), a million and four million
// parameters; rank 0 prints the time of one and the bus bandwidth
// (2(n-1)/n of the buffer moved per rank, NCCL's convention).
func bench(w *mpi.World) error {
	for _, length := range []int{61706, 1 << 20, 1 << 22} {
		buf := make([]float32, length)
		const warm, reps = 3, 20
		var start time.Time
		for i := range warm + reps {
			if i == warm {
				if err := w.Barrier(); err != nil {
					return err
				}
				start = time.Now()
			}
			if err := w.AllreduceSumFloat32(buf); err != nil {
				return err
			}
		}
		per := time.Since(start) / reps
		n := float64(w.Size())
		bus := 2 * (n - 1) / n * float64(4*length) / per.Seconds() / 1e9
		if w.Rank() == 0 {
			fmt.Printf("ranks %d floats %d: %v per all-reduce, bus %.2f GB/s\n", w.Size(), length, per.Round(time.Microsecond), bus)
		}
	}
	return nil
}
