// Losses (engine/loss.go is the CPU op): softmax cross-entropy with label
// smoothing, mean squared error and mean absolute error, forward and backward.
//
// The forward passes reduce in two fixed stages so a loss is the same every
// run: the device writes one value per row (cross-entropy) or per block
// (MSE, L1), and the host adds them in order in float64.
//
// softmax_xent_forward_f32: one block per row (grid-stride over rows),
// blockDim.x a multiple of 32 up to 1024. The arg-max takes the first index
// on ties and skips NaN as the CPU's sequential scan does. Sums are float,
// the row's loss is put together in double.
// The element-wise kernels take any 1-D launch and loop with a grid stride.
// mse/l1_forward_f32 need blockDim.x a multiple of 32 (warp reductions).
#include "common.cuh"

// Block-wide sum and (max, first arg-max) for blockDim.x a multiple of 32:
// every thread gets the result, every warp adds the warp totals in the same
// order. sh/shi are 32-entry shared arrays the caller may reuse for the next
// reduction (the leading __syncthreads protects them).
__device__ __forceinline__ float loss_block_sum(float v, float* sh) {
	v = kiln_warp_sum(v);
	unsigned int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
	__syncthreads();
	if (lane == 0) sh[warp] = v;
	__syncthreads();
	v = lane < blockDim.x / 32 ? sh[lane] : 0.0f;
	return kiln_warp_sum(v);
}

// Keeps (v, i) or takes (ov, oi): the larger value, the smaller index on a
// tie. NaN never wins (every comparison with it is false).
__device__ __forceinline__ void loss_argmax_take(float& v, int& i, float ov, int oi) {
	if (ov > v || (ov == v && oi < i)) {
		v = ov;
		i = oi;
	}
}

__device__ __forceinline__ void loss_block_argmax(float& v, int& i, float* sh, int* shi) {
	for (int o = 16; o > 0; o >>= 1) {
		float ov = __shfl_xor_sync(0xffffffffu, v, o);
		int oi = __shfl_xor_sync(0xffffffffu, i, o);
		loss_argmax_take(v, i, ov, oi);
	}
	unsigned int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
	__syncthreads();
	if (lane == 0) {
		sh[warp] = v;
		shi[warp] = i;
	}
	__syncthreads();
	if (lane < blockDim.x / 32) {
		v = sh[lane];
		i = shi[lane];
	} else {
		v = -INFINITY;
		i = 0x7fffffff;
	}
	for (int o = 16; o > 0; o >>= 1) {
		float ov = __shfl_xor_sync(0xffffffffu, v, o);
		int oi = __shfl_xor_sync(0xffffffffu, i, o);
		loss_argmax_take(v, i, ov, oi);
	}
}

// One element of the cross-entropy's gradient from its probability p: the
// one expression both kernels use, so fused and apart give the same bits.
__device__ __forceinline__ float xent_dlogit(float p, bool label, float s, float off, float on) {
	float d = s * p - off;
	if (label) d -= on;
	return d;
}

// Per row n: probs[n,:] = softmax(logits[n,:]) (unless probs is null),
// rowloss[n] = logsumexp − a·x[label] − b·Σx with a = 1−ε, b = ε/K, and
// rowcorrect[n] = 1 when the first arg-max is the label. probs may be logits.
// With dlogits (and probs) the backward pass comes in the same launch:
// dlogits[n,:] as softmax_xent_backward_f32 writes it from these
// probabilities (s, off, on as there), the same bits. dlogits may be probs
// or logits: each thread reads its element before it writes it.
KILN_KERNEL softmax_xent_forward_f32(float* probs, double* rowloss, int* rowcorrect, const float* logits,
                                     const int* labels, float a, float b, int N, int K, float* dlogits, float s,
                                     float off, float on) {
	__shared__ float sh[32];
	__shared__ int shi[32];
	for (int row = blockIdx.x; row < N; row += gridDim.x) {
		const float* x = logits + (long long)row * K;
		int y = labels[row];
		y = y < 0 ? 0 : (y >= K ? K - 1 : y);  // checked on the host; never read out of bounds
		float xy = x[y];                       // read before probs (maybe x) is written
		float x0 = x[0];
		float best = -INFINITY, sumx = 0.0f;
		int arg = 0x7fffffff;
		for (int j = threadIdx.x; j < K; j += blockDim.x) {
			float v = x[j];
			sumx += v;
			loss_argmax_take(best, arg, v, j);
		}
		loss_block_argmax(best, arg, sh, shi);
		if (x0 != x0 || arg >= K) {  // the CPU's scan keeps index 0 when x[0] is NaN
			arg = 0;
			best = x0;
		}
		sumx = loss_block_sum(sumx, sh);
		float sum = 0.0f;
		for (int j = threadIdx.x; j < K; j += blockDim.x) sum += expf(x[j] - best);
		sum = loss_block_sum(sum, sh);
		if (threadIdx.x == 0) {
			// As differences from best (engine/loss.go): best + log Σ lost
			// the log to best's rounding past about 1e16.
			// b = 0 (no smoothing) adds nothing: 0·∞ would be NaN for a −Inf logit.
			double rl = log((double)sum) + (double)a * ((double)best - (double)xy);
			if (b != 0.0f) rl += (double)b * ((double)K * (double)best - (double)sumx);
			rowloss[row] = rl;
			rowcorrect[row] = arg == y;
		}
		if (probs != nullptr) {
			float inv = 1.0f / sum;
			float* p = probs + (long long)row * K;
			for (int j = threadIdx.x; j < K; j += blockDim.x) {
				float pj = expf(x[j] - best) * inv;
				p[j] = pj;
				if (dlogits != nullptr) dlogits[(long long)row * K + j] = xent_dlogit(pj, j == y, s, off, on);
			}
		}
		__syncthreads();  // the next row's reads after this row's writes
	}
}

// xent_log_step: the row results of softmax_xent_forward_f32 added into one
// record of a LossLog (engine/losslog.go): slot[0] = Σ rowloss, slot[1] =
// Σ rowcorrect. One thread adds in row order, as the host adds a copy of the
// rows (engine/loss_cuda.go, xentCUDA), so a logged loss has the same bits
// as one read back at once. The block first stages each run of XENT_LOG_RUN
// rows in shared memory: walking them in global memory, the thread waited
// on every load (35 µs for 1024 rows on the H200, LeNet b1024's profile).
// One block (any size).
#define XENT_LOG_RUN 1024
KILN_KERNEL xent_log_step(const double* rowloss, const int* rowcorrect, int N, double* slot) {
	__shared__ double loss[XENT_LOG_RUN];
	__shared__ int right[XENT_LOG_RUN];
	if (blockIdx.x != 0) return;
	double sum = 0.0;
	long long correct = 0;
	for (int i0 = 0; i0 < N; i0 += XENT_LOG_RUN) {
		const int n = min(XENT_LOG_RUN, N - i0);
		for (int i = threadIdx.x; i < n; i += blockDim.x) {
			loss[i] = rowloss[i0 + i];
			right[i] = rowcorrect[i0 + i];
		}
		__syncthreads();
		if (threadIdx.x == 0)
			for (int i = 0; i < n; i++) {
				sum += loss[i];
				correct += right[i];
			}
		__syncthreads();  // the run is read before the next overwrites it
	}
	if (threadIdx.x == 0) {
		slot[0] = sum;
		slot[1] = (double)correct;
	}
}

// dlogits = s·probs − off, less on at the label: scale·(probs − q)/N with
// s = scale/N, off = s·ε/K, on = s·(1−ε). dlogits may be probs.
KILN_KERNEL softmax_xent_backward_f32(float* dlogits, const float* probs, const int* labels, float s,
                                      float off, float on, int N, int K) {
	KILN_FOR(i, (long long)N * K) {
		long long row = i / K;
		int j = (int)(i - row * K);
		dlogits[i] = xent_dlogit(probs[i], j == labels[row], s, off, on);
	}
}

// One partial sum per block: Σ(pred − target)² (l1 = 0) or Σ|pred − target|.
__device__ __forceinline__ void loss_regression_partial(float* partial, const float* pred, const float* target,
                                                        long long n, bool l1) {
	__shared__ float warp_sums[32];
	float s = 0.0f;
	KILN_FOR(i, n) {
		float d = pred[i] - target[i];
		s += l1 ? fabsf(d) : d * d;
	}
	s = kiln_warp_sum(s);
	unsigned int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
	if (lane == 0) warp_sums[warp] = s;
	__syncthreads();
	if (warp == 0) {
		s = lane < blockDim.x / 32 ? warp_sums[lane] : 0.0f;
		s = kiln_warp_sum(s);
		if (lane == 0) partial[blockIdx.x] = s;
	}
}

KILN_KERNEL mse_forward_f32(float* partial, const float* pred, const float* target, long long n) {
	loss_regression_partial(partial, pred, target, n, false);
}

KILN_KERNEL l1_forward_f32(float* partial, const float* pred, const float* target, long long n) {
	loss_regression_partial(partial, pred, target, n, true);
}

// dpred = c2·(pred − target) with c2 = 2·scale/numel. dpred may be pred.
KILN_KERNEL mse_backward_f32(float* dpred, const float* pred, const float* target, float c2, long long n) {
	KILN_FOR(i, n) dpred[i] = c2 * (pred[i] - target[i]);
}

// dpred = c·sign(pred − target), sign(0) = 0, with c = scale/numel.
KILN_KERNEL l1_backward_f32(float* dpred, const float* pred, const float* target, float c, long long n) {
	KILN_FOR(i, n) {
		float d = pred[i] - target[i];
		dpred[i] = d > 0.0f ? c : (d < 0.0f ? -c : 0.0f);
	}
}
