// Broadcast multiply on flat float32 buffers, out = x ⊙ g
// (engine/broadcast.go), and the gradient of g, a reduction over the
// broadcast axes.
//
// broadcast_mul_*: the Go side merges x's axes into k ≤ 8 runs that g either
// broadcasts along (g stride 0) or follows (g stride > 0) and passes them as
// eight descriptors size<<32 | gstride, outermost first (unused ones 0). The
// forward is one multiply per element (exact). The dg reduction is
// deterministic: every element of g is summed by one thread (per_thread,
// when the innermost run is not broadcast, so neighbouring threads read
// neighbouring addresses) or by one warp (lanes stride the reduction, then a
// fixed shuffle tree), never with atomics. blockDim.x a multiple of 32.
#include "common.cuh"

#define BCAST_MAX_RANK 8

// The merged axes, outermost first: size, stride in g (0: broadcast) and
// stride in x.
struct BcastPlan {
	int k;
	long long size[BCAST_MAX_RANK], gstride[BCAST_MAX_RANK], xstride[BCAST_MAX_RANK];
};

__device__ __forceinline__ BcastPlan bcast_plan(int k, unsigned long long d0, unsigned long long d1,
                                                unsigned long long d2, unsigned long long d3, unsigned long long d4,
                                                unsigned long long d5, unsigned long long d6, unsigned long long d7) {
	BcastPlan p;
	p.k = k;
	unsigned long long d[BCAST_MAX_RANK] = {d0, d1, d2, d3, d4, d5, d6, d7};
	long long xs = 1;
#pragma unroll
	for (int a = BCAST_MAX_RANK - 1; a >= 0; a--) {
		bool used = a < k;
		p.size[a] = used ? (long long)(d[a] >> 32) : 1;
		p.gstride[a] = used ? (long long)(d[a] & 0xffffffffull) : 0;
		p.xstride[a] = xs;
		xs *= p.size[a];
	}
	return p;
}

// g's offset for x's flat index i.
template <typename I>
__device__ __forceinline__ long long bcast_goff(const BcastPlan& p, I i) {
	long long goff = 0;
#pragma unroll
	for (int a = BCAST_MAX_RANK - 1; a >= 0; a--) {
		if (a < p.k) {
			I sz = (I)p.size[a];
			goff += (long long)(i % sz) * p.gstride[a];
			i /= sz;
		}
	}
	return goff;
}

// x's offset of the element that is number r along the broadcast axes (bc
// true) or number r along the others (bc false), the other axes at 0.
__device__ __forceinline__ long long bcast_xoff(const BcastPlan& p, long long r, bool bc) {
	long long off = 0;
#pragma unroll
	for (int a = BCAST_MAX_RANK - 1; a >= 0; a--) {
		if (a < p.k && (p.gstride[a] == 0) == bc) {
			off += (r % p.size[a]) * p.xstride[a];
			r /= p.size[a];
		}
	}
	return off;
}

template <typename I>
__device__ __forceinline__ void bcast_mul(float* out, const float* x, const float* g, I n, const BcastPlan& p) {
	for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (I)blockDim.x * gridDim.x)
		out[i] = x[i] * g[bcast_goff(p, i)];
}

// out = x ⊙ g broadcast (also dx = dout ⊙ g). out may be x.
KILN_KERNEL broadcast_mul_forward_f32(float* out, const float* x, const float* g, long long n, int k,
                                      unsigned long long d0, unsigned long long d1, unsigned long long d2,
                                      unsigned long long d3, unsigned long long d4, unsigned long long d5,
                                      unsigned long long d6, unsigned long long d7) {
	BcastPlan p = bcast_plan(k, d0, d1, d2, d3, d4, d5, d6, d7);
	// 32-bit division where the index and its grid stride cannot wrap.
	if (n <= 0x7fffffffll)
		bcast_mul<unsigned int>(out, x, g, (unsigned int)n, p);
	else
		bcast_mul<long long>(out, x, g, n, p);
}

// dg[e] = Σ dout·x over the R elements of x that g's element e multiplies
// (G elements of g in all). Overwrites dg.
KILN_KERNEL broadcast_mul_backward_f32(float* dg, const float* dout, const float* x, long long G, long long R,
                                       int per_thread, int k, unsigned long long d0, unsigned long long d1,
                                       unsigned long long d2, unsigned long long d3, unsigned long long d4,
                                       unsigned long long d5, unsigned long long d6, unsigned long long d7) {
	BcastPlan p = bcast_plan(k, d0, d1, d2, d3, d4, d5, d6, d7);
	if (per_thread) {
		KILN_FOR(e, G) {
			// The broadcast axes as an odometer (unrolled, so idx stays in
			// registers): the loop over r adds strides instead of dividing.
			long long idx[BCAST_MAX_RANK] = {0, 0, 0, 0, 0, 0, 0, 0};
			long long off = bcast_xoff(p, e, false);
			float s = 0.0f;
			for (long long r = 0; r < R; r++) {
				s += dout[off] * x[off];
#pragma unroll
				for (int a = BCAST_MAX_RANK - 1; a >= 0; a--) {  // next r: carry outwards
					if (a < p.k && p.gstride[a] == 0) {
						off += p.xstride[a];
						if (++idx[a] < p.size[a]) break;
						off -= p.xstride[a] * p.size[a];
						idx[a] = 0;
					}
				}
			}
			dg[e] = s;
		}
		return;
	}
	unsigned int lane = threadIdx.x % 32;
	long long warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
	long long warps = (long long)blockDim.x * gridDim.x / 32;
	for (long long e = warp; e < G; e += warps) {  // the whole warp takes the same e
		const long long base = bcast_xoff(p, e, false);
		float s = 0.0f;
		for (long long r = lane; r < R; r += 32) {
			long long off = base + bcast_xoff(p, r, true);
			s += dout[off] * x[off];
		}
		s = kiln_warp_sum(s);
		if (lane == 0) dg[e] = s;
	}
}
