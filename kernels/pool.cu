// Pooling on float32 NCHW tensors, forward and backward: 2-D max and average
// pooling (floor mode, PyTorch's MaxPool2d/AvgPool2d with
// count_include_pad=True) and global average pooling. The Go launchers are
// engine/pool_cuda.go; global max pooling, CBAM's channel pooling and
// Transpose12 are in channelpool.cu.
//
// Launch assumptions: element kernels take any 1-D grid (grid-stride loops);
// the per-plane reductions take one block per plane (grid-stride over planes)
// with blockDim.x a multiple of 32, at most 1024.
//
// Numerics: every result is bit-identical to the CPU op except the global
// average, whose sum is a tree (the CPU sums with four accumulators). The
// backward passes gather (one thread per input element sums the outputs that
// reach it, in the CPU's order), so there are no atomics and dx is the same
// every run. Divisions use the _rn intrinsics so that nvcc's --use_fast_math
// cannot change a bit. Max pooling follows the CPU's tie and NaN rules
// exactly (see the kernel); argmax is an index into the (H,W) plane.
//
// All are bandwidth-bound: each input element is read once from DRAM (window
// overlap is served by L1/L2) and consecutive threads touch consecutive
// addresses.
#include "pool.cuh"

static __device__ __forceinline__ float pool_div_rn(float a, float b) {
#ifdef __CUDA_ARCH__
	return __fdiv_rn(a, b);
#else
	return a / b;
#endif
}

// Output rows (or columns) whose window holds input row i: [lo, hi].
static __device__ __forceinline__ void pool_reach(int i, int pad, int k, int stride, int n_out, int* lo, int* hi) {
	int t = i + pad - k + 1;
	*lo = t <= 0 ? 0 : (t + stride - 1) / stride;
	*hi = min((i + pad) / stride, n_out - 1);
}

// Output element i (of planes·OH·OW): its plane, and its window clipped to
// the input, rows [h0, h1) and columns [w0, w1).
static __device__ __forceinline__ long long pool_window(long long i, int H, int W, int OH, int OW, int kh, int kw,
                                                        int sh, int sw, int ph, int pw, bool small, int* h0, int* h1,
                                                        int* w0, int* w1) {
	int ow, oh;
	long long plane = pool_divmod(pool_divmod(i, OW, &ow, small), OH, &oh, small);
	int r = oh * sh - ph, c = ow * sw - pw;
	*h1 = min(r + kh, H);
	*w1 = min(c + kw, W);
	*h0 = max(r, 0);
	*w0 = max(c, 0);
	return plane;
}

// Input element i (of planes·H·W): its plane, its row and column, and the
// output rows [oh0, oh1] and columns [ow0, ow1] whose windows hold it.
static __device__ __forceinline__ long long pool_reach_window(long long i, int H, int W, int OH, int OW, int kh,
                                                              int kw, int sh, int sw, int ph, int pw, bool small,
                                                              int* ih, int* iw, int* oh0, int* oh1, int* ow0,
                                                              int* ow1) {
	long long plane = pool_divmod(pool_divmod(i, W, iw, small), H, ih, small);
	pool_reach(*ih, ph, kh, sh, OH, oh0, oh1);
	pool_reach(*iw, pw, kw, sw, OW, ow0, ow1);
	return plane;
}

// out = max of each window, the first maximum on ties; a NaN wins and a later
// NaN replaces an earlier one (the CPU's `v > m || v != v`). argmax may be null.
// total = planes·OH·OW.
KILN_KERNEL maxpool2d_forward_f32(float* out, int* argmax, const float* x, long long total, int H, int W, int OH,
                                  int OW, int kh, int kw, int sh, int sw, int ph, int pw, int relu) {
	bool small = pool_small(total);
	KILN_FOR(i, total) {
		int h0, h1, w0, w1;
		long long plane = pool_window(i, H, W, OH, OW, kh, kw, sh, sw, ph, pw, small, &h0, &h1, &w0, &w1);
		const float* xp = x + plane * H * W;
		float m = pool_neg_inf();
		int at = h0 * W + w0;
		for (int ih = h0; ih < h1; ih++) {
			for (int iw = w0; iw < w1; iw++) {
				float v = xp[ih * W + iw];
				if (v > m || v != v) {
					m = v;
					at = ih * W + iw;
				}
			}
		}
		out[i] = relu && m <= 0.0f ? 0.0f : m;  // ReLU on the pooled value: +0, NaN stays
		if (argmax) argmax[i] = at;
	}
}

// dx (overwritten): each input sums dout over the windows that picked it, in
// output order (the CPU's order of `dx[a] += dout`). total = planes·H·W.
// With keep (the fused ReLU's pooled output) only the windows whose output
// is > 0 send their dout, as ReLU's backward then the pool's would.
KILN_KERNEL maxpool2d_backward_f32(float* dx, const float* dout, const int* argmax, long long total, int H, int W,
                                   int OH, int OW, int kh, int kw, int sh, int sw, int ph, int pw,
                                   const float* keep) {
	bool small = pool_small(total);
	KILN_FOR(i, total) {
		int ih, iw, oh0, oh1, ow0, ow1;
		long long plane = pool_reach_window(i, H, W, OH, OW, kh, kw, sh, sw, ph, pw, small, &ih, &iw, &oh0, &oh1,
		                                    &ow0, &ow1);
		const float* d = dout + plane * OH * OW;
		const int* a = argmax + plane * OH * OW;
		int self = ih * W + iw;
		float s = 0.0f;
		for (int oh = oh0; oh <= oh1; oh++) {
			for (int ow = ow0; ow <= ow1; ow++) {
				int o = oh * OW + ow;
				if (a[o] == self && (keep == nullptr || keep[plane * OH * OW + o] > 0.0f)) s += d[o];
			}
		}
		dx[i] = s;
	}
}

// The common 2×2, stride 2, unpadded pooling, four floats of a row at a time
// (issue 17, item 7): one thread for two neighbouring outputs of a row, which
// read two float4 (their windows' two rows) and, backward, write two. The
// launcher takes these only for W a multiple of 4 with the four-float side
// (x forward, dx backward) 16-byte aligned; the results are the general
// kernels' bits (the same comparisons, sums and divisions in the same
// order). pairs = planes·OH·OW/2; OW = W/2 is even.

// The first output of pair p: its plane, row and column, and the offset of
// its window's top-left input within the plane.
static __device__ __forceinline__ long long pool2_pair(long long p, int H, int W, int OH, int OW, int* oh, int* ow,
                                                       int* at) {
	int half = OW / 2;
	long long r = p / half;
	*ow = 2 * (int)(p - r * half);
	*oh = (int)(r % OH);
	*at = 2 * *oh * W + 2 * *ow;
	return r / OH;
}

// The max of one window's four values, in the general kernel's order and
// with its rule (the first maximum; a NaN wins, a later one replaces it).
static __device__ __forceinline__ float pool2_max(float a, float b, float c, float d, int at, int W, int* arg) {
	float v[4] = {a, b, c, d};
	int off[4] = {0, 1, W, W + 1};
	float m = pool_neg_inf();
	*arg = at;
	for (int k = 0; k < 4; k++) {
		if (v[k] > m || v[k] != v[k]) {
			m = v[k];
			*arg = at + off[k];
		}
	}
	return m;
}

KILN_KERNEL maxpool2x2_forward_f32(float* out, int* argmax, const float* x, long long pairs, int H, int W, int OH,
                                   int OW, int relu) {
	KILN_FOR(p, pairs) {
		int oh, ow, at, a0, a1;
		long long plane = pool2_pair(p, H, W, OH, OW, &oh, &ow, &at);
		const float* r0 = x + plane * H * W + at;
		float4 u = kiln_ld4(r0), v = kiln_ld4(r0 + W);
		float m0 = pool2_max(u.x, u.y, v.x, v.y, at, W, &a0);
		float m1 = pool2_max(u.z, u.w, v.z, v.w, at + 2, W, &a1);
		long long o = plane * OH * OW + (long long)oh * OW + ow;
		out[o] = relu && m0 <= 0.0f ? 0.0f : m0;
		out[o + 1] = relu && m1 <= 0.0f ? 0.0f : m1;
		if (argmax) {
			argmax[o] = a0;
			argmax[o + 1] = a1;
		}
	}
}

// dx (overwritten): each input gets 0 + dout of the window that picked it
// (as the gather's sum from zero), or 0; with keep, only where keep > 0. An
// odd H's last row, which no window holds, gets zeros from the last row of
// pairs.
KILN_KERNEL maxpool2x2_backward_f32(float* dx, const float* dout, const int* argmax, long long pairs, int H, int W,
                                    int OH, int OW, const float* keep) {
	KILN_FOR(p, pairs) {
		int oh, ow, at;
		long long plane = pool2_pair(p, H, W, OH, OW, &oh, &ow, &at);
		long long o = plane * OH * OW + (long long)oh * OW + ow;
		float g[2] = {0.0f, 0.0f};
		int a[2] = {argmax[o], argmax[o + 1]};
		for (int k = 0; k < 2; k++) {
			if (keep == nullptr || keep[o + k] > 0.0f) g[k] = 0.0f + dout[o + k];
		}
		float* r0 = dx + plane * H * W + at;
		kiln_st4(r0, make_float4(a[0] == at ? g[0] : 0.0f, a[0] == at + 1 ? g[0] : 0.0f,
		                         a[1] == at + 2 ? g[1] : 0.0f, a[1] == at + 3 ? g[1] : 0.0f));
		kiln_st4(r0 + W, make_float4(a[0] == at + W ? g[0] : 0.0f, a[0] == at + W + 1 ? g[0] : 0.0f,
		                             a[1] == at + W + 2 ? g[1] : 0.0f, a[1] == at + W + 3 ? g[1] : 0.0f));
		if ((H & 1) && oh == OH - 1) kiln_st4(r0 + 2 * W, make_float4(0.0f, 0.0f, 0.0f, 0.0f));
	}
}

KILN_KERNEL avgpool2x2_forward_f32(float* out, const float* x, long long pairs, int H, int W, int OH, int OW) {
	KILN_FOR(p, pairs) {
		int oh, ow, at;
		long long plane = pool2_pair(p, H, W, OH, OW, &oh, &ow, &at);
		const float* r0 = x + plane * H * W + at;
		float4 u = kiln_ld4(r0), v = kiln_ld4(r0 + W);
		long long o = plane * OH * OW + (long long)oh * OW + ow;
		out[o] = pool_div_rn(0.0f + u.x + u.y + v.x + v.y, 4.0f);
		out[o + 1] = pool_div_rn(0.0f + u.z + u.w + v.z + v.w, 4.0f);
	}
}

KILN_KERNEL avgpool2x2_backward_f32(float* dx, const float* dout, long long pairs, int H, int W, int OH, int OW) {
	KILN_FOR(p, pairs) {
		int oh, ow, at;
		long long plane = pool2_pair(p, H, W, OH, OW, &oh, &ow, &at);
		long long o = plane * OH * OW + (long long)oh * OW + ow;
		float g0 = 0.0f + pool_div_rn(dout[o], 4.0f), g1 = 0.0f + pool_div_rn(dout[o + 1], 4.0f);
		float* r0 = dx + plane * H * W + at;
		kiln_st4(r0, make_float4(g0, g0, g1, g1));
		kiln_st4(r0 + W, make_float4(g0, g0, g1, g1));
		if ((H & 1) && oh == OH - 1) kiln_st4(r0 + 2 * W, make_float4(0.0f, 0.0f, 0.0f, 0.0f));
	}
}

// out = (sum of the window's inputs) / (kh·kw): padding counts as zeros.
KILN_KERNEL avgpool2d_forward_f32(float* out, const float* x, long long total, int H, int W, int OH, int OW, int kh,
                                  int kw, int sh, int sw, int ph, int pw) {
	float div = (float)(kh * kw);
	bool small = pool_small(total);
	KILN_FOR(i, total) {
		int h0, h1, w0, w1;
		long long plane = pool_window(i, H, W, OH, OW, kh, kw, sh, sw, ph, pw, small, &h0, &h1, &w0, &w1);
		const float* xp = x + plane * H * W;
		float s = 0.0f;
		for (int ih = h0; ih < h1; ih++) {
			for (int iw = w0; iw < w1; iw++) s += xp[ih * W + iw];
		}
		out[i] = pool_div_rn(s, div);
	}
}

// dx (overwritten) = Σ over the windows holding the input of dout/(kh·kw).
KILN_KERNEL avgpool2d_backward_f32(float* dx, const float* dout, long long total, int H, int W, int OH, int OW,
                                   int kh, int kw, int sh, int sw, int ph, int pw) {
	float div = (float)(kh * kw);
	bool small = pool_small(total);
	KILN_FOR(i, total) {
		int ih, iw, oh0, oh1, ow0, ow1;
		long long plane = pool_reach_window(i, H, W, OH, OW, kh, kw, sh, sw, ph, pw, small, &ih, &iw, &oh0, &oh1,
		                                    &ow0, &ow1);
		const float* d = dout + plane * OH * OW;
		float s = 0.0f;
		for (int oh = oh0; oh <= oh1; oh++) {
			for (int ow = ow0; ow <= ow1; ow++) s += pool_div_rn(d[oh * OW + ow], div);
		}
		dx[i] = s;
	}
}

// Block-wide sum; every thread gets the total. warp_sums is __shared__
// float[32]. Ends with a barrier, so it can be called again in a loop.
static __device__ float pool_block_sum(float v, float* warp_sums) {
	unsigned int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
	v = kiln_warp_sum(v);
	if (lane == 0) warp_sums[warp] = v;
	__syncthreads();
	v = lane < nwarps ? warp_sums[lane] : 0.0f;
	v = kiln_warp_sum(v);
	__syncthreads();
	return v;
}

// out[p] = mean of plane p (hw values). One block per plane.
KILN_KERNEL global_avgpool_forward_f32(float* out, const float* x, int planes, int hw) {
	__shared__ float warp_sums[32];
	for (int p = blockIdx.x; p < planes; p += gridDim.x) {
		const float* xp = x + (long long)p * hw;
		float s = 0.0f;
		for (int j = threadIdx.x; j < hw; j += blockDim.x) s += xp[j];
		s = pool_block_sum(s, warp_sums);
		if (threadIdx.x == 0) out[p] = pool_div_rn(s, (float)hw);
	}
}

// dx (overwritten) = dout[plane]/hw. total = planes·hw.
KILN_KERNEL global_avgpool_backward_f32(float* dx, const float* dout, long long total, int hw) {
	float div = (float)hw;
	bool small = pool_small(total);
	KILN_FOR(i, total) {
		int j;
		dx[i] = pool_div_rn(dout[pool_divmod(i, hw, &j, small)], div);
	}
}
