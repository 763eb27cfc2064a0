// Conv2D on NCHW float32 tensors, PyTorch's cross-correlation with stride,
// zero padding, dilation and groups (engine/conv.go is the CPU op), as
// implicit GEMMs on the tiling of gemm_tile.cuh: the im2col matrix is never
// written, each tile load computes where its element lives (or that it is
// padding, a zero). Per group g (blockIdx.z / splits), with
// kg = Cg·KH·KW rows k = (c, kh, kw) and columns over every image at once:
//
//	forward       out[n, co, pix] = Σ_k W[co, k]·x(k; n, pix) + b[co]
//	              M = Cout/groups, N = batch·OH·OW, K = kg
//	input grad    dx[n, c, ih, iw] = Σ_(co,kh,kw) W[co, c, kh, kw]·dout[n, co, oh, ow]
//	              over the taps whose (oh, ow) exist: the gather form of
//	              col2im, each dx element summed by one thread in a fixed
//	              order, no atomics. One product per stride phase (a strided
//	              convolution's pixels of one (ih mod sh, iw mod sw) class,
//	              with only the taps that reach them): M = Cg, N = batch·
//	              (H/sh)·(W/sw), K = Cout/groups·(KH/sh)·(KW/sw), roughly
//	weight grad   dW[co, k] += Σ_(n,pix) dout[n, co, pix]·x(k; n, pix)
//	              M = Cout/groups, N = kg, K = batch·OH·OW, split over K when
//	              the tile grid is small (partials added by
//	              gemm_splitk_reduce_f32 in split order); with db, an fp32
//	              product takes the bias gradient as column kg, a column of
//	              ones in im2col(x): N = kg + 1, split with the weights
//	bias grad     db[co] += Σ_(n,pix) dout[n, co, pix], blocks per channel
//	              and run of images, partials added in order (when the
//	              weight gradient does not take it)
//
// Launch: the gemm kernels take 256 threads, grid (⌈N/BN⌉, ⌈M/BM⌉,
// groups·splits), the input gradient's (⌈N/BN⌉ of its largest phase, ⌈M/BM⌉,
// groups·sh·sw); conv2d_bias_grad_f32 takes 256 threads, grid (any, splits). Every
// tensor must have fewer than 2^31 elements (the launcher checks): indices
// are 32-bit.
//
// Numerics: fp32 accumulation in k order (input grad: co, then kh, kw);
// deterministic. The forward adds the bias after the sum.
#include "gemm_tile.cuh"

namespace kiln_conv {

using kiln_gemm::CStore;

struct Shape {
	int n, cin, h, w, cout, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, groups;
	int cg, mg, kk, kg, p, hw;

	__device__ __forceinline__ void finish() {
		cg = cin / groups;
		mg = cout / groups;
		kk = kh * kw;
		kg = cg * kk;
		p = oh * ow;
		hw = h * w;
	}
};

#define KILN_CONV_SHAPE_PARAMS                                                                           \
	int n, int cin, int h, int w, int cout, int kh, int kw, int oh, int ow, int sh, int sw, int ph, int pw, \
	    int dh, int dw, int groups
#define KILN_CONV_SHAPE {n, cin, h, w, cout, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, groups, 0, 0, 0, 0, 0, 0}

__device__ __forceinline__ bool inside(int v, int n) { return (unsigned)v < (unsigned)n; }

// out (N, Cout, OH, OW) = conv(x (N, Cin, H, W), w (Cout, Cg, KH, KW)) + bias.
struct Forward {
	static constexpr bool A_ALONG_K = true, B_ALONG_K = false, NEEDS_KTAB = true;
	struct Col {
		int base, ih0, iw0;  // x offset of tap (0,0) of the group's channel 0; its row, column
	};
	struct OutCol {
		int off;  // n·Cout·P + pix
	};
	Shape s;
	float* out;
	const float* x;
	const float* wt;
	const float* bias;
	int M, N, K, splits;

	// k = (c, kh, kw) → x offset from tap (0,0), and the tap's row and column shift.
	__device__ __forceinline__ void krow(int, int k, int* t) const {
		int c = k / s.kk, r = k - c * s.kk, ki = r / s.kw, kj = r - ki * s.kw;
		t[1] = ki * s.dh;
		t[2] = kj * s.dw;
		t[0] = c * s.hw + t[1] * s.w + t[2];
	}
	__device__ __forceinline__ void col(int g, int j, Col& c) const {
		int n = j / s.p, pix = j - n * s.p, oh = pix / s.ow, ow = pix - oh * s.ow;
		c.ih0 = oh * s.sh - s.ph;
		c.iw0 = ow * s.sw - s.pw;
		c.base = (n * s.cin + g * s.cg) * s.hw + c.ih0 * s.w + c.iw0;
	}
	__device__ __forceinline__ void out_col(int, int j, OutCol& o) const {
		int n = j / s.p;
		o.off = n * s.cout * s.p + (j - n * s.p);
	}
	__device__ __forceinline__ float a(int g, int i, int k, const int*) const {
		return wt[(g * s.mg + i) * s.kg + k];
	}
	__device__ __forceinline__ float b(int, int, int, const int* t, const Col& c) const {
		return inside(c.ih0 + t[1], s.h) && inside(c.iw0 + t[2], s.w) ? x[c.base + t[0]] : 0.0f;
	}
	__device__ __forceinline__ void store(int g, int, int i, int, const OutCol& o, float acc) const {
		int co = g * s.mg + i;
		out[o.off + co * s.p] = bias ? acc + bias[co] : acc;
	}
};

// The stride phases of the input gradient, along one dimension: the input
// rows ih with (ih + pad) ≡ r (mod stride) are reached only by the taps kh
// with kh·dil ≡ r (mod stride); every other tap of theirs falls between
// output rows. Phase r's rows are first, first + stride, … (count of them)
// and its taps tap0, tap0 + step, … (taps of them; none when no kh solves
// it). With stride 1 there is one phase: every row, every tap. The phase's
// row first + q·stride meets tap tap0 + i·step at output row q + shift0 -
// i·dshift (an exact division, done here once).
struct Phase {
	int first, count, tap0, step, taps, shift0, dshift;
};

__device__ __forceinline__ int conv_gcd(int a, int b) {
	while (b != 0) {
		int t = a % b;
		a = b;
		b = t;
	}
	return a;
}

__device__ __forceinline__ Phase conv_phase(int r, int size, int pad, int k, int dil, int stride) {
	Phase p;
	p.first = ((r - pad) % stride + stride) % stride;
	p.count = p.first < size ? (size - p.first + stride - 1) / stride : 0;
	p.step = stride / conv_gcd(dil, stride);
	p.tap0 = -1;
	for (int t = 0; t < k && t < p.step; t++)
		if ((t * dil) % stride == r) {
			p.tap0 = t;
			break;
		}
	p.taps = p.tap0 < 0 ? 0 : (k - p.tap0 + p.step - 1) / p.step;
	p.shift0 = p.tap0 < 0 ? 0 : (p.first + pad - p.tap0 * dil) / stride;
	p.dshift = p.step * dil / stride;
	return p;
}

// dx (N, Cin, H, W) = Σ over taps of Wᵀ·dout, overwritten, one stride phase
// (rows, cols) per block: blockIdx.z = group·phases + phase. Each phase is a
// product over its own pixels and its own taps only, so a stride-2 gradient
// multiplies a quarter of what every tap of every pixel would.
struct InputGrad {
	static constexpr bool A_ALONG_K = true, B_ALONG_K = false, NEEDS_KTAB = true;
	struct Col {
		int base;    // dout offset of the image and group, plus the pixel's (hq, wq)
		int hq, wq;  // the pixel's row and column among its phase's
	};
	struct OutCol {
		int off;  // n·Cin·H·W + input pixel
	};
	Shape s;
	float* dx;
	const float* dout;
	const float* wt;
	Phase rows, cols;
	int phases;  // sh·sw
	int M, N, K, splits;

	// k = (co, kh, kw) among the phase's taps → W offset within the group
	// (without c); the output row and column the tap adds to the pixel's
	// phase row and column; and the dout offset they make.
	__device__ __forceinline__ void krow(int, int k, int* t) const {
		int per = rows.taps * cols.taps, co = k / per, r = k - co * per, hi = r / cols.taps, wi = r - hi * cols.taps;
		int ki = rows.tap0 + hi * rows.step, kj = cols.tap0 + wi * cols.step;
		t[0] = co * s.kg + ki * s.kw + kj;
		t[1] = rows.shift0 - hi * rows.dshift;
		t[2] = cols.shift0 - wi * cols.dshift;
		t[3] = co * s.p + t[1] * s.ow + t[2];
	}
	// j = (n, the phase's row hq, its column wq) → the input pixel.
	__device__ __forceinline__ void pixel(int j, int& n, int& hq, int& wq) const {
		int per = rows.count * cols.count;
		n = j / per;
		int q = j - n * per;
		hq = q / cols.count;
		wq = q - hq * cols.count;
	}
	__device__ __forceinline__ void col(int g, int j, Col& c) const {
		int n;
		pixel(j, n, c.hq, c.wq);
		c.base = (n * s.cout + g / phases * s.mg) * s.p + c.hq * s.ow + c.wq;
	}
	__device__ __forceinline__ void out_col(int, int j, OutCol& o) const {
		int n, hq, wq;
		pixel(j, n, hq, wq);
		o.off = n * s.cin * s.hw + (rows.first + hq * s.sh) * s.w + cols.first + wq * s.sw;
	}
	__device__ __forceinline__ float a(int g, int i, int, const int* t) const {
		return wt[g / phases * s.mg * s.kg + t[0] + i * s.kk];
	}
	// The output pixel (oh, ow) = (hq, wq) + the tap's shift, if it exists:
	// no division in the loop.
	__device__ __forceinline__ float b(int, int, int, const int* t, const Col& c) const {
		return inside(c.hq + t[1], s.oh) && inside(c.wq + t[2], s.ow) ? dout[c.base + t[3]] : 0.0f;
	}
	__device__ __forceinline__ void store(int g, int, int i, int, const OutCol& o, float acc) const {
		dx[o.off + (g / phases * s.cg + i) * s.hw] = acc;
	}
};

// dw (Cout, Cg, KH, KW) += dout · im2col(x)ᵀ; with db, db (Cout) += dout ·
// 1 as the product's column kg.
struct WeightGrad {
	static constexpr bool A_ALONG_K = true, B_ALONG_K = true, NEEDS_KTAB = true;
	struct Col {
		int off, khd, kwd;  // x offset of tap (c, kh, kw) from the pixel's tap (0,0); shifts
		bool ones;          // column kg: the bias gradient's
	};
	struct OutCol {};
	Shape s;
	const float* dout;
	const float* x;
	float* db;  // null: N = kg, no bias column
	CStore out;
	int M, N, K, splits;

	// q = (n, oh, ow) → dout offset (without co), x offset of tap (0,0) of the
	// group's channel 0, and that tap's row and column.
	__device__ __forceinline__ void krow(int g, int q, int* t) const {
		int n = q / s.p, pix = q - n * s.p, oh = pix / s.ow, ow = pix - oh * s.ow;
		t[0] = n * s.cout * s.p + pix;
		t[2] = oh * s.sh - s.ph;
		t[3] = ow * s.sw - s.pw;
		t[1] = (n * s.cin + g * s.cg) * s.hw + t[2] * s.w + t[3];
	}
	__device__ __forceinline__ void col(int, int k, Col& c) const {
		if (k == s.kg) {
			c.ones = true;
			return;
		}
		int ch = k / s.kk, r = k - ch * s.kk, ki = r / s.kw, kj = r - ki * s.kw;
		c.khd = ki * s.dh;
		c.kwd = kj * s.dw;
		c.off = ch * s.hw + c.khd * s.w + c.kwd;
	}
	__device__ __forceinline__ void out_col(int, int, OutCol&) const {}
	__device__ __forceinline__ float a(int g, int i, int, const int* t) const {
		return dout[t[0] + (g * s.mg + i) * s.p];
	}
	__device__ __forceinline__ float b(int, int, int, const int* t, const Col& c) const {
		if (c.ones) return 1.0f;
		return inside(t[2] + c.khd, s.h) && inside(t[3] + c.kwd, s.w) ? x[t[1] + c.off] : 0.0f;
	}
	__device__ __forceinline__ void store(int g, int sp, int i, int j, const OutCol&, float acc) const {
		if (j == s.kg && splits == 1) {  // the bias column, unsplit: accumulate as dw does
			float* p = db + g * s.mg + i;
			*p = acc + *p;
			return;
		}
		out.put(g, sp, i, j, acc);  // split partials: N = kg + 1 wide
	}
};

template <class T>
__device__ __forceinline__ void forward(float* out, const float* x, const float* wt, const float* bias, Shape s) {
	s.finish();
	Forward op;
	op.s = s;
	op.out = out;
	op.x = x;
	op.wt = wt;
	op.bias = bias;
	op.M = s.mg;
	op.N = s.n * s.p;
	op.K = s.kg;
	op.splits = 1;
	kiln_gemm::gemm_tile<T>(op);
}

template <class T>
__device__ __forceinline__ void input_grad(float* dx, const float* dout, const float* wt, Shape s) {
	s.finish();
	InputGrad op;
	op.s = s;
	op.dx = dx;
	op.dout = dout;
	op.wt = wt;
	op.phases = s.sh * s.sw;
	int phase = blockIdx.z % op.phases;
	op.rows = conv_phase(phase / s.sw, s.h, s.ph, s.kh, s.dh, s.sh);
	op.cols = conv_phase(phase % s.sw, s.w, s.pw, s.kw, s.dw, s.sw);
	op.M = s.cg;
	op.N = s.n * op.rows.count * op.cols.count;
	op.K = s.mg * op.rows.taps * op.cols.taps;  // 0: the phase's dx is zero
	op.splits = 1;
	if ((long long)blockIdx.x * T::BN >= op.N) return;  // the grid covers the largest phase
	kiln_gemm::gemm_tile<T>(op);
}

template <class T>
__device__ __forceinline__ void weight_grad(float* dw, float* db, const float* dout, const float* x, float* ws,
                                            int splits, Shape s) {
	s.finish();
	WeightGrad op;
	op.s = s;
	op.dout = dout;
	op.x = x;
	op.db = db;
	op.M = s.mg;
	op.N = s.kg + (db != nullptr);
	op.K = s.n * s.p;
	op.splits = splits;
	// dw of group g is rows g·mg.. of (Cout, kg): accumulate (beta 1).
	op.out = CStore{dw, s.kg, (long long)s.mg * s.kg, 1.0f, 1.0f, ws, splits, op.M, op.N};
	kiln_gemm::gemm_tile<T>(op);
}

}  // namespace kiln_conv

// One macro per pass, each taking the kernel's full name, so that every
// kernel symbol is written out once (grep and the generator find it).
#define KILN_CONV_FORWARD_KERNEL(name, TILE, MINB)                                                              \
	KILN_KERNEL __launch_bounds__(256, MINB)                                                                    \
	    name(float* out, const float* x, const float* wt, const float* bias, KILN_CONV_SHAPE_PARAMS) {          \
		kiln_conv::forward<TILE>(out, x, wt, bias, kiln_conv::Shape KILN_CONV_SHAPE);                           \
	}
#define KILN_CONV_INPUT_GRAD_KERNEL(name, TILE, MINB)                                                           \
	KILN_KERNEL __launch_bounds__(256, MINB)                                                                    \
	    name(float* dx, const float* dout, const float* wt, KILN_CONV_SHAPE_PARAMS) {                           \
		kiln_conv::input_grad<TILE>(dx, dout, wt, kiln_conv::Shape KILN_CONV_SHAPE);                            \
	}
#define KILN_CONV_WEIGHT_GRAD_KERNEL(name, TILE, MINB)                                                          \
	KILN_KERNEL __launch_bounds__(256, MINB)                                                                    \
	    name(float* dwt, float* db, const float* dout, const float* x, float* ws, int splits,                   \
	         KILN_CONV_SHAPE_PARAMS) {                                                                         \
		kiln_conv::weight_grad<TILE>(dwt, db, dout, x, ws, splits, kiln_conv::Shape KILN_CONV_SHAPE);           \
	}

KILN_CONV_WEIGHT_GRAD_KERNEL(conv2d_weight_grad_32x32_f32, kiln_gemm::Tile32, 4)
KILN_CONV_FORWARD_KERNEL(conv2d_forward_32x128_f32, kiln_gemm::Tile32x128, 1)
KILN_CONV_INPUT_GRAD_KERNEL(conv2d_input_grad_32x128_f32, kiln_gemm::Tile32x128, 1)
KILN_CONV_WEIGHT_GRAD_KERNEL(conv2d_weight_grad_32x128_f32, kiln_gemm::Tile32x128, 1)
KILN_CONV_FORWARD_KERNEL(conv2d_forward_64x64_f32, kiln_gemm::Tile64, 1)
KILN_CONV_INPUT_GRAD_KERNEL(conv2d_input_grad_64x64_f32, kiln_gemm::Tile64, 1)
KILN_CONV_WEIGHT_GRAD_KERNEL(conv2d_weight_grad_64x64_f32, kiln_gemm::Tile64, 1)
KILN_CONV_FORWARD_KERNEL(conv2d_forward_128x128_f32, kiln_gemm::Tile128, 2)
KILN_CONV_INPUT_GRAD_KERNEL(conv2d_input_grad_128x128_f32, kiln_gemm::Tile128, 2)
KILN_CONV_WEIGHT_GRAD_KERNEL(conv2d_weight_grad_128x128_f32, kiln_gemm::Tile128, 2)
KILN_CONV_FORWARD_KERNEL(conv2d_forward_64x64_tf32, kiln_gemm::Tile64TF32, 1)
KILN_CONV_INPUT_GRAD_KERNEL(conv2d_input_grad_64x64_tf32, kiln_gemm::Tile64TF32, 1)
KILN_CONV_WEIGHT_GRAD_KERNEL(conv2d_weight_grad_64x64_tf32, kiln_gemm::Tile64TF32, 1)
KILN_CONV_FORWARD_KERNEL(conv2d_forward_128x128_tf32, kiln_gemm::Tile128TF32, 2)
KILN_CONV_INPUT_GRAD_KERNEL(conv2d_input_grad_128x128_tf32, kiln_gemm::Tile128TF32, 2)
KILN_CONV_WEIGHT_GRAD_KERNEL(conv2d_weight_grad_128x128_tf32, kiln_gemm::Tile128TF32, 2)
KILN_CONV_WEIGHT_GRAD_KERNEL(conv2d_weight_grad_32x32_bf16, kiln_gemm::Tile32BF16, 4)
KILN_CONV_FORWARD_KERNEL(conv2d_forward_32x128_bf16, kiln_gemm::Tile32x128BF16, 1)
KILN_CONV_INPUT_GRAD_KERNEL(conv2d_input_grad_32x128_bf16, kiln_gemm::Tile32x128BF16, 1)
KILN_CONV_WEIGHT_GRAD_KERNEL(conv2d_weight_grad_32x128_bf16, kiln_gemm::Tile32x128BF16, 1)
KILN_CONV_FORWARD_KERNEL(conv2d_forward_64x64_bf16, kiln_gemm::Tile64BF16, 1)
KILN_CONV_INPUT_GRAD_KERNEL(conv2d_input_grad_64x64_bf16, kiln_gemm::Tile64BF16, 1)
KILN_CONV_WEIGHT_GRAD_KERNEL(conv2d_weight_grad_64x64_bf16, kiln_gemm::Tile64BF16, 1)
KILN_CONV_FORWARD_KERNEL(conv2d_forward_128x128_bf16, kiln_gemm::Tile128BF16, 2)
KILN_CONV_INPUT_GRAD_KERNEL(conv2d_input_grad_128x128_bf16, kiln_gemm::Tile128BF16, 2)
KILN_CONV_WEIGHT_GRAD_KERNEL(conv2d_weight_grad_128x128_bf16, kiln_gemm::Tile128BF16, 2)

// db[co] += Σ_n Σ_pix dout[n, co, pix], dout (N, Cout, P), split over the
// batch: block (co, s) sums images [s·per, (s+1)·per) of channel co (grid-
// stride over channels), each thread a fixed strided subset, then warps and
// the block in a fixed order. One split (gridDim.y == 1) adds its sum to
// out = db; more write out[s·Cout + co], which gemm_splitk_reduce_f32 adds
// to db in split order. The same sum every run. Block 256 threads.
KILN_KERNEL conv2d_bias_grad_f32(float* out, const float* dout, int n, int cout, int p, int per) {
	__shared__ float warp_sums[32];
	const int i0 = blockIdx.y * per, i1 = min(n, i0 + per);
	for (int co = blockIdx.x; co < cout; co += gridDim.x) {
		float s = 0.0f;
		for (int i = i0; i < i1; i++) {
			const float* d = dout + ((long long)i * cout + co) * p;
			for (int q = threadIdx.x; q < p; q += blockDim.x) s += d[q];
		}
		s = kiln_warp_sum(s);
		unsigned int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
		if (lane == 0) warp_sums[warp] = s;
		__syncthreads();
		if (warp == 0) {
			s = lane < (blockDim.x + 31) / 32 ? warp_sums[lane] : 0.0f;
			s = kiln_warp_sum(s);
			if (lane == 0) {
				if (gridDim.y == 1)
					out[co] += s;
				else
					out[blockIdx.y * cout + co] = s;
			}
		}
		__syncthreads();
	}
}
