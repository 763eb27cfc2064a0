//go:build mpi

package mpi

/*
#cgo pkg-config: ompi-c
#include <mpi.h>

// Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_IN_PLACE...) are macros
// over addresses of its globals, which cgo cannot name: small wrappers do.

static int kiln_init(int *provided) {
	return MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, provided);
}

// kiln_setup makes errors return (the default handler aborts the job) and
// splits off the ranks that share this machine's memory, ordered by rank.
static int kiln_setup(int *rank, int *size, MPI_Comm *local, int *lrank, int *lsize) {
	int err = MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	if (err == MPI_SUCCESS) err = MPI_Comm_rank(MPI_COMM_WORLD, rank);
	if (err == MPI_SUCCESS) err = MPI_Comm_size(MPI_COMM_WORLD, size);
	if (err == MPI_SUCCESS)
		err = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, *rank, MPI_INFO_NULL, local);
	if (err == MPI_SUCCESS) err = MPI_Comm_rank(*local, lrank);
	if (err == MPI_SUCCESS) err = MPI_Comm_size(*local, lsize);
	return err;
}

static int kiln_sum_f32(float *buf, int n) {
	return MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
}

static int kiln_sum_f64(double *buf, int n) {
	return MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

static int kiln_isum_f32(float *buf, int n, MPI_Request *req) {
	return MPI_Iallreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, req);
}

static int kiln_test(MPI_Request *req, int *done) { return MPI_Test(req, done, MPI_STATUS_IGNORE); }

static int kiln_wait(MPI_Request *req) { return MPI_Wait(req, MPI_STATUS_IGNORE); }

static int kiln_bcast_f32(float *buf, int n, int root) {
	return MPI_Bcast(buf, n, MPI_FLOAT, root, MPI_COMM_WORLD);
}

static int kiln_bcast_bytes(void *buf, int n, int root) {
	return MPI_Bcast(buf, n, MPI_BYTE, root, MPI_COMM_WORLD);
}

static int kiln_bcast_i64(long long *v, int root) {
	return MPI_Bcast(v, 1, MPI_LONG_LONG, root, MPI_COMM_WORLD);
}

static int kiln_allgather_int(int mine, int *all) {
	return MPI_Allgather(&mine, 1, MPI_INT, all, 1, MPI_INT, MPI_COMM_WORLD);
}

static int kiln_allgatherv_bytes(void *mine, int n, void *all, int *counts, int *displs) {
	return MPI_Allgatherv(mine, n, MPI_BYTE, all, counts, displs, MPI_BYTE, MPI_COMM_WORLD);
}

static int kiln_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

static int kiln_finalize(MPI_Comm *local) {
	int err = MPI_Comm_free(local);
	int ferr = MPI_Finalize();
	return err != MPI_SUCCESS ? err : ferr;
}

static int kiln_abort(int code) { return MPI_Abort(MPI_COMM_WORLD, code); }

static void kiln_error_string(int code, char *buf, int *len) {
	if (MPI_Error_string(code, buf, len) != MPI_SUCCESS) *len = 0;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"sync"
	"unsafe"
)

// Built reports whether this binary has MPI in it (the mpi build tag).
const Built = true

// World is MPI_COMM_WORLD. Its methods may be called from any goroutine;
// they take turns (see Init on threads).
type World struct {
	mu                   sync.Mutex
	rank, size           int
	localRank, localSize int
	local                C.MPI_Comm
	finalized            bool
}

var (
	errFinalized = errors.New("mpi: world used after Finalize")
	initMu       sync.Mutex
	initialized  bool
)

// reproducible are the Open MPI settings Init makes unless the user already
// chose (an OMPI_MCA_ variable, which mpirun's --mca also sets). The tuned
// component's fixed decision picks the all-reduce algorithm from the message
// size and world size, and each algorithm adds in its own order: with 3
// ranks (Open MPI 4.1.4) ring, recursive doubling and linear give different
// last bits, and the fixed decision took recursive doubling for 1000
// float32s but ring for 1000 float64s, so a buffer's length class would
// decide its bits. Forced to ring (4), every element is reduced along one
// fixed path and the result gathered, so all ranks hold the same bits and a
// run repeats bit for bit at a fixed world size and buffer length. Ring is
// also the bandwidth-optimal choice for gradient-sized buffers; for buffers
// shorter than the world Open MPI's ring falls back to recursive doubling,
// which keeps operands in rank order, so ranks still agree. Other
// collectives move bytes without arithmetic and keep Open MPI's choice.
// Where another component outranks tuned (HCOLL or UCC on some clusters),
// these settings do not apply and reproducibility is that component's.
var reproducible = [][2]string{
	{"OMPI_MCA_coll_tuned_use_dynamic_rules", "1"},
	{"OMPI_MCA_coll_tuned_allreduce_algorithm", "4"},
	// The nonblocking all-reduce (libnbc) likewise, ring (1).
	{"OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1"},
}

// maxCount is the most elements one MPI call moves: MPI counts are C ints.
// Longer buffers go in fixed chunks, so the sums stay reproducible.
const maxCount = 1 << 30

// Init starts MPI (once per process) and returns the world. Before
// MPI_Init it pins Open MPI's all-reduce to the ring algorithm, unless
// OMPI_MCA_ variables already choose, so that sums are bit-identical on
// every rank and run after run at a fixed world size (see reproducible).
//
// Threads: Go moves goroutines between OS threads, so MPI_THREAD_FUNNELED
// (every call from the thread that called Init) would need a goroutine
// locked to its thread for the life of the process and every call handed to
// it. Kiln asks for MPI_THREAD_SERIALIZED instead: calls from any thread,
// never two at once, which the World's mutex guarantees. Like FUNNELED it
// promises MPI that calls never overlap, so an MPI need not lock for it
// as it must for MPI_THREAD_MULTIPLE. Open MPI grants every level since 3.0
// (ompi_info: "MPI_THREAD_MULTIPLE: yes"); an MPI that grants less is an
// error here.
func Init() (*World, error) {
	initMu.Lock()
	defer initMu.Unlock()
	if initialized {
		return nil, errors.New("mpi: Init called twice (MPI starts once per process)")
	}
	for _, kv := range reproducible {
		if _, set := os.LookupEnv(kv[0]); !set {
			if err := os.Setenv(kv[0], kv[1]); err != nil {
				return nil, fmt.Errorf("mpi: %w", err)
			}
		}
	}
	var provided C.int
	if err := mpiError("MPI_Init_thread", C.kiln_init(&provided)); err != nil {
		return nil, err
	}
	initialized = true
	if provided < C.MPI_THREAD_SERIALIZED {
		return nil, fmt.Errorf("mpi: this MPI provides thread level %d, Kiln needs MPI_THREAD_SERIALIZED (%d)",
			int(provided), int(C.MPI_THREAD_SERIALIZED))
	}
	w := &World{}
	var rank, size, lrank, lsize C.int
	if err := mpiError("setup", C.kiln_setup(&rank, &size, &w.local, &lrank, &lsize)); err != nil {
		return nil, err
	}
	w.rank, w.size, w.localRank, w.localSize = int(rank), int(size), int(lrank), int(lsize)
	return w, nil
}

// Rank is this process's index in the world, from 0.
func (w *World) Rank() int { return w.rank }

// Size is the number of processes in the world.
func (w *World) Size() int { return w.size }

// LocalRank is this process's index among those on its machine (sharing
// memory), ordered by rank: one GPU per local rank.
func (w *World) LocalRank() int { return w.localRank }

// LocalSize is the number of processes on this machine.
func (w *World) LocalSize() int { return w.localSize }

// call runs one MPI operation under the world's lock.
func (w *World) call(name string, op func() C.int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.finalized {
		return errFinalized
	}
	return mpiError(name, op())
}

// AllreduceSumFloat32 replaces buf, on every rank, by the element-wise sum
// of every rank's buf. Every rank passes the same length.
func (w *World) AllreduceSumFloat32(buf []float32) error {
	return chunks(len(buf), func(lo, hi int) error {
		return w.call("MPI_Allreduce", func() C.int {
			return C.kiln_sum_f32((*C.float)(ptr(buf[lo:hi])), C.int(hi-lo))
		})
	})
}

// Pending is an all-reduce under way (IallreduceSumFloat32): its buffer
// must not be touched until Wait returns or Test reports it done.
type Pending struct {
	w    *World
	reqs []C.MPI_Request
	pin  runtime.Pinner // MPI keeps the buffer's address after the call returns
	done bool
}

// IallreduceSumFloat32 starts AllreduceSumFloat32 on buf and returns at
// once, so that the caller computes while the sum goes on; it progresses in
// later MPI calls (Test) and ends in Wait. Every rank starts the same
// all-reduces in the same order.
func (w *World) IallreduceSumFloat32(buf []float32) (*Pending, error) {
	p := &Pending{w: w}
	if len(buf) > 0 {
		p.pin.Pin(&buf[0])
	}
	err := chunks(len(buf), func(lo, hi int) error {
		p.reqs = append(p.reqs, nil)
		req := &p.reqs[len(p.reqs)-1]
		return w.call("MPI_Iallreduce", func() C.int {
			return C.kiln_isum_f32((*C.float)(ptr(buf[lo:hi])), C.int(hi-lo), req)
		})
	})
	if err != nil {
		p.pin.Unpin()
		return nil, err
	}
	return p, nil
}

// Test moves the all-reduce on and reports whether it has ended.
func (p *Pending) Test() (bool, error) {
	for len(p.reqs) > 0 && !p.done {
		var flag C.int
		req := &p.reqs[0]
		if err := p.w.call("MPI_Test", func() C.int { return C.kiln_test(req, &flag) }); err != nil {
			return false, err
		}
		if flag == 0 {
			return false, nil
		}
		p.reqs = p.reqs[1:]
	}
	p.finish()
	return true, nil
}

// Wait returns when the all-reduce has ended.
func (p *Pending) Wait() error {
	for len(p.reqs) > 0 && !p.done {
		req := &p.reqs[0]
		if err := p.w.call("MPI_Wait", func() C.int { return C.kiln_wait(req) }); err != nil {
			return err
		}
		p.reqs = p.reqs[1:]
	}
	p.finish()
	return nil
}

func (p *Pending) finish() {
	if !p.done {
		p.done = true
		p.pin.Unpin()
	}
}

// AllreduceSumFloat64 is AllreduceSumFloat32 for float64.
func (w *World) AllreduceSumFloat64(buf []float64) error {
	return chunks(len(buf), func(lo, hi int) error {
		return w.call("MPI_Allreduce", func() C.int {
			return C.kiln_sum_f64((*C.double)(ptr(buf[lo:hi])), C.int(hi-lo))
		})
	})
}

// BroadcastFloat32 copies root's buf into every rank's buf (same length).
func (w *World) BroadcastFloat32(buf []float32, root int) error {
	return chunks(len(buf), func(lo, hi int) error {
		return w.call("MPI_Bcast", func() C.int {
			return C.kiln_bcast_f32((*C.float)(ptr(buf[lo:hi])), C.int(hi-lo), C.int(root))
		})
	})
}

// BroadcastBytes returns root's buf on every rank; the other ranks' buf is
// ignored, so they need not know its length.
func (w *World) BroadcastBytes(buf []byte, root int) ([]byte, error) {
	n := C.longlong(len(buf))
	if err := w.call("MPI_Bcast", func() C.int { return C.kiln_bcast_i64(&n, C.int(root)) }); err != nil {
		return nil, err
	}
	if w.rank != root {
		buf = make([]byte, int(n))
	}
	err := chunks(len(buf), func(lo, hi int) error {
		return w.call("MPI_Bcast", func() C.int {
			return C.kiln_bcast_bytes(ptr(buf[lo:hi]), C.int(hi-lo), C.int(root))
		})
	})
	return buf, err
}

// AllgatherBytes returns every rank's b, indexed by rank; lengths may differ.
func (w *World) AllgatherBytes(b []byte) ([][]byte, error) {
	if len(b) > math.MaxInt32 {
		return nil, fmt.Errorf("mpi: AllgatherBytes of %d bytes, at most %d", len(b), math.MaxInt32)
	}
	counts := make([]C.int, w.size)
	if err := w.call("MPI_Allgather", func() C.int {
		return C.kiln_allgather_int(C.int(len(b)), &counts[0])
	}); err != nil {
		return nil, err
	}
	displs := make([]C.int, w.size)
	total := 0
	for r, c := range counts {
		if total+int(c) > math.MaxInt32 {
			return nil, fmt.Errorf("mpi: AllgatherBytes of more than %d bytes in all", math.MaxInt32)
		}
		displs[r] = C.int(total)
		total += int(c)
	}
	all := make([]byte, total)
	if err := w.call("MPI_Allgatherv", func() C.int {
		return C.kiln_allgatherv_bytes(ptr(b), C.int(len(b)), ptr(all), &counts[0], &displs[0])
	}); err != nil {
		return nil, err
	}
	out := make([][]byte, w.size)
	for r := range out {
		out[r] = all[displs[r] : int(displs[r])+int(counts[r]) : int(displs[r])+int(counts[r])]
	}
	return out, nil
}

// Barrier returns once every rank has called it.
func (w *World) Barrier() error {
	return w.call("MPI_Barrier", func() C.int { return C.kiln_barrier() })
}

// Finalize ends MPI; every rank calls it once, after its last collective.
func (w *World) Finalize() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.finalized {
		return nil
	}
	w.finalized = true
	return mpiError("MPI_Finalize", C.kiln_finalize(&w.local))
}

// Abort ends every rank of the job with code (mpirun kills the others);
// it does not return. It takes no lock: another goroutine may be blocked in
// a collective that will never finish.
func (w *World) Abort(code int) {
	C.kiln_abort(C.int(code))
	os.Exit(code)
}

// ptr is the address of a slice's first element, nil when it is empty (MPI
// reads nothing at a zero count).
func ptr[T any](s []T) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(&s[0])
}

// chunks calls f on [lo, hi) pieces of at most maxCount elements, once with
// an empty piece for an empty buffer so that every rank makes the same calls.
func chunks(n int, f func(lo, hi int) error) error {
	lo := 0
	for {
		hi := min(lo+maxCount, n)
		if err := f(lo, hi); err != nil {
			return err
		}
		if hi == n {
			return nil
		}
		lo = hi
	}
}

// mpiError turns an MPI return code into an error carrying MPI's own words.
func mpiError(op string, code C.int) error {
	if code == C.MPI_SUCCESS {
		return nil
	}
	var buf [C.MPI_MAX_ERROR_STRING]C.char
	var n C.int
	C.kiln_error_string(code, &buf[0], &n)
	if n <= 0 {
		return fmt.Errorf("mpi: %s failed with error code %d", op, int(code))
	}
	return fmt.Errorf("mpi: %s: %s", op, C.GoStringN(&buf[0], n))
}
