//go:build cudaemu && !cuda

// The emulated device: a registry of kernels by name and a launcher that runs
// a grid block by block with one OS thread per CUDA thread.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "emu_registry.h"

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>

// The defaults of a kilntsan build (TSAN_OPTIONS still adds to them). The
// copies of Go's side and of the CPU engine run in interceptors (memcpy,
// memset), from OS threads whose order only Go knows: their accesses are
// left out, the kernels' own are all checked. The first race stops the
// process, because Go exits without running ThreadSanitizer's exit hook
// (its exit code 66 would never be seen).
extern "C" const char* __tsan_default_options() { return "ignore_interceptors_accesses=1:halt_on_error=1"; }

namespace {
char go_calls;
}  // namespace
#endif

namespace {
// GoCall brackets one call from Go. Under ThreadSanitizer (the kilntsan
// tag) the only races worth a report are those between the threads of a
// block. Go is not instrumented: a goroutine that copies to the device on
// one OS thread and launches from another is ordered by Go's scheduler,
// which ThreadSanitizer cannot see. Every call from Go therefore acquires
// one object on entry and releases it on return, so that the calls are
// ordered as Go ordered them.
struct GoCall {
#if defined(__SANITIZE_THREAD__)
	GoCall() { __tsan_acquire(&go_calls); }
	~GoCall() { __tsan_release(&go_calls); }
#else
	GoCall() {}
#endif
	GoCall(const GoCall&) = delete;
	GoCall& operator=(const GoCall&) = delete;
};

struct Entry {
	void* fn;
	kiln_emu_invoke_fn invoke;
	int nparams;
};
std::map<std::string, Entry>& registry() {
	static std::map<std::string, Entry> r;
	return r;
}
std::mutex launch_mu;

// Workers are the OS threads that play a block's CUDA threads. They are
// made once and kept (a launch used to create and join up to 1024 threads,
// which cost more than most kernels); each launch wakes the first n.
class Workers {
public:
	void run(unsigned n, const std::function<void(unsigned)>& job) {
		std::unique_lock<std::mutex> l(mu_);
		while (threads_.size() < n) {
			unsigned id = static_cast<unsigned>(threads_.size());
			threads_.emplace_back([this, id] { loop(id); });
		}
		job_ = &job;
		n_ = n;
		remaining_ = n;
		gen_++;
		start_.notify_all();
		done_.wait(l, [this] { return remaining_ == 0; });
		job_ = nullptr;
	}

private:
	void loop(unsigned id) {
		uint64_t seen = 0;
		std::unique_lock<std::mutex> l(mu_);
		for (;;) {
			start_.wait(l, [&] { return gen_ != seen; });
			seen = gen_;
			if (id >= n_) continue;
			const std::function<void(unsigned)>* job = job_;
			l.unlock();
			(*job)(id);
			l.lock();
			if (--remaining_ == 0) done_.notify_one();
		}
	}

	std::mutex mu_;
	std::condition_variable start_, done_;
	std::vector<std::thread> threads_;
	const std::function<void(unsigned)>* job_ = nullptr;
	unsigned n_ = 0, remaining_ = 0;
	uint64_t gen_ = 0;
};

// Never destroyed: the workers wait for launches until the process exits.
Workers& workers() {
	static Workers* w = new Workers;
	return *w;
}
}  // namespace

extern "C" void kiln_emu_register(const char* name, void* fn, kiln_emu_invoke_fn invoke, int nparams) {
	registry()[name] = Entry{fn, invoke, nparams};
}

// kiln_emu_lookup returns the number of parameters of kernel name and an
// opaque handle, or -1 when no such kernel is compiled in.
extern "C" int kiln_emu_lookup(const char* name, uintptr_t* handle) {
	auto it = registry().find(name);
	if (it == registry().end()) return -1;
	*handle = reinterpret_cast<uintptr_t>(&it->second);
	return it->second.nparams;
}

// kiln_emu_names writes the registered names, NUL-separated, into buf and
// returns the length needed.
extern "C" int kiln_emu_names(char* buf, int cap) {
	int n = 0;
	for (auto& kv : registry()) {
		int l = static_cast<int>(kv.first.size()) + 1;
		if (n + l <= cap) std::memcpy(buf + n, kv.first.c_str(), l);
		n += l;
	}
	return n;
}

// kiln_emu_launch runs one kernel. params points at nparams 8-byte slots;
// each parameter is read from the start of its slot at its own size.
extern "C" int kiln_emu_launch(uintptr_t handle, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                               unsigned by, unsigned bz, unsigned shmem, uint64_t* slots, int nslots) {
	GoCall from_go;
	Entry* e = reinterpret_cast<Entry*>(handle);
	if (nslots != e->nparams) return 1;
	unsigned nthreads = bx * by * bz;
	if (nthreads == 0 || nthreads > 1024 || gx == 0 || gy == 0 || gz == 0) return 2;
	std::lock_guard<std::mutex> lock(launch_mu);

	std::vector<void*> params(nslots);
	for (int i = 0; i < nslots; i++) params[i] = &slots[i];

	unsigned nwarps = (nthreads + 31) / 32;
	std::barrier<> block_barrier(nthreads);
	std::vector<std::barrier<>*> warp_barriers(nwarps);
	for (unsigned w = 0; w < nwarps; w++) warp_barriers[w] = new std::barrier<>(std::min(32u, nthreads - 32 * w));
	std::vector<uint64_t> exchange(32 * nwarps);
	std::vector<unsigned int> votes(nwarps);
	std::vector<uint32_t> table(32 * KILN_EMU_WARP_REGS * nwarps);
	// Dynamic shared memory is heap memory of exactly the requested size, so an
	// overrun is reported like any other.
	void* dyn = shmem ? std::malloc(shmem) : nullptr;

	KilnEmuLaunch launch{};
	launch.grid = dim3{gx, gy, gz};
	launch.block = dim3{bx, by, bz};
	launch.nthreads = nthreads;
	launch.dynamic_shared = dyn;
	launch.block_barrier = &block_barrier;
	launch.warp_barriers = warp_barriers.data();
	launch.warp_exchange = exchange.data();
	launch.warp_vote = votes.data();
	launch.warp_table = table.data();
	kiln_emu_current = &launch;
	blockDim = launch.block;
	gridDim = launch.grid;

	std::function<void(unsigned)> body = [&](unsigned t) {
		threadIdx = dim3{t % bx, (t / bx) % by, t / (bx * by)};
		for (unsigned z = 0; z < gz; z++)
			for (unsigned y = 0; y < gy; y++)
				for (unsigned x = 0; x < gx; x++) {
					blockIdx = dim3{x, y, z};
					e->invoke(e->fn, params.data());
					block_barrier.arrive_and_wait();  // the block ends for everyone
				}
	};
	workers().run(nthreads, body);

	kiln_emu_current = nullptr;
	for (auto* b : warp_barriers) delete b;
	std::free(dyn);
	return 0;
}

extern "C" uintptr_t kiln_emu_malloc(size_t n) {
	GoCall from_go;
	return reinterpret_cast<uintptr_t>(std::malloc(n ? n : 1));
}
extern "C" void kiln_emu_free(uintptr_t p) {
	GoCall from_go;
	std::free(reinterpret_cast<void*>(p));
}
extern "C" void kiln_emu_htod(uintptr_t dst, const void* src, size_t n) {
	GoCall from_go;
	std::memcpy(reinterpret_cast<void*>(dst), src, n);
}
extern "C" void kiln_emu_dtoh(void* dst, uintptr_t src, size_t n) {
	GoCall from_go;
	std::memcpy(dst, reinterpret_cast<const void*>(src), n);
}
extern "C" void kiln_emu_dtod(uintptr_t dst, uintptr_t src, size_t n) {
	GoCall from_go;
	std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n);
}
extern "C" void kiln_emu_zero(uintptr_t p, size_t n) {
	GoCall from_go;
	std::memset(reinterpret_cast<void*>(p), 0, n);
}
