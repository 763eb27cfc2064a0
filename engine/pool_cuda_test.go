package engine_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// The pooling kernels reproduce the CPU ops bit for bit (same window order,
// same tie and NaN rules, the gather backward adds in the CPU's order), so
// their tolerance is zero; average pooling divides like the CPU and gets
// rtol 1e-6 only in case a build rounds a division differently. Global
// average pooling sums in a tree (the CPU in four running sums): rtol 1e-5
// for planes of a few hundred values.

type poolCUDACase struct {
	n, c, h, w int
	p          engine.Pool2DParams
}

var poolCUDACases = []poolCUDACase{
	{1, 1, 1, 1, engine.Pool2DSquare(1, 1, 0)},                                                          // one element
	{2, 3, 7, 9, engine.Pool2DSquare(2, 0, 0)},                                                          // 2×2/2, odd H and W
	{1, 5, 9, 8, engine.Pool2DSquare(3, 2, 1)},                                                          // overlapping, padded
	{2, 2, 8, 7, engine.Pool2DSquare(2, 3, 1)},                                                          // stride > kernel
	{1, 3, 6, 5, engine.Pool2DParams{KernelH: 3, KernelW: 2, StrideH: 1, StrideW: 2, PadH: 1, PadW: 1}}, // rectangular
	{1, 2, 5, 5, engine.Pool2DSquare(5, 1, 2)},                                                          // every window clipped
}

// quantised rounds x to multiples of 1/4, so windows hold ties.
func quantised(x *engine.Tensor) {
	for i := range x.Len() {
		x.SetAt(i, math.Round(4*x.At(i))/4)
	}
}

// poolArgmax fetches the indices a GPU pass recorded for argmax into it and
// compares them with the CPU's.
func poolArgmax(t *testing.T, what string, argmax, want []int32) {
	t.Helper()
	opsMust(t, engine.ArgmaxToHost(argmax))
	for i := range want {
		if argmax[i] != want[i] {
			t.Fatalf("%s: argmax[%d] gpu=%d cpu=%d", what, i, argmax[i], want[i])
		}
	}
}

func TestCUDAMaxPool2D(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(21, 22))
	fwd, bwd := []string{"maxpool2d_forward_f32"}, []string{"maxpool2d_backward_f32"}
	for ci, c := range poolCUDACases {
		for variant := range 3 { // random, ties, ties with NaN and -inf
			x := randTensor(rng, engine.Float32, c.n, c.c, c.h, c.w)
			if variant > 0 {
				quantised(x)
			}
			if variant == 2 {
				for i := 0; i < x.Len(); i += 7 {
					x.SetAt(i, []float64{math.NaN(), math.Inf(-1), math.Inf(1)}[i%3])
				}
			}
			dx := dev(t, x)
			shape, err := engine.Pool2DOutputShape(x.Shape(), c.p)
			opsMust(t, err)
			out := engine.New(engine.Float32, shape...)
			am := make([]int32, out.Len())
			opsMust(t, engine.MaxPool2DForward(out, am, x, c.p))
			dout := dev(t, engine.New(engine.Float32, shape...))
			dam := make([]int32, out.Len())
			opsMust(t, engine.MaxPool2DForward(dout, dam, dx, c.p))
			checkKernels(t, fwd, "MaxPool2DForward", dout, out, 0, 0)
			if slices.ContainsFunc(dam, func(v int32) bool { return v != 0 }) {
				t.Fatalf("case %d: the GPU forward pass wrote the host argmax slice", ci)
			}
			poolArgmax(t, "MaxPool2DForward", dam, am)

			// Without argmax.
			opsMust(t, engine.MaxPool2DForward(dout, nil, dx, c.p))
			checkKernels(t, fwd, "MaxPool2DForward without argmax", dout, out, 0, 0)

			g, dg := devRand(t, rng, shape...)
			want := engine.New(engine.Float32, x.Shape()...)
			opsMust(t, engine.MaxPool2DBackward(want, g, am, c.p))
			got := dev(t, engine.New(engine.Float32, x.Shape()...))
			got.Fill(7) // overwritten, not added to
			opsMust(t, engine.MaxPool2DBackward(got, dg, dam, c.p))
			checkKernels(t, bwd, "MaxPool2DBackward", got, want, 0, 0)

			// A host argmax (no GPU pass wrote it) is uploaded.
			host := slices.Clone(am)
			opsMust(t, engine.MaxPool2DBackward(got, dg, host, c.p))
			checkKernels(t, bwd, "MaxPool2DBackward from host argmax", got, want, 0, 0)
		}
	}
	// An index outside its window is refused, not scattered.
	c := poolCUDACases[1]
	_, dx := devRand(t, rng, c.n, c.c, c.h, c.w)
	shape, _ := engine.Pool2DOutputShape(dx.Shape(), c.p)
	_, dg := devRand(t, rng, shape...)
	bad := make([]int32, dg.Len())
	bad[1] = 0 // window 1 starts at column 2
	if err := engine.MaxPool2DBackward(dx, dg, bad, c.p); err == nil {
		t.Fatal("MaxPool2DBackward accepted an argmax outside its window")
	}
}

// The average pool on the GPU sums each window in order; the CPU's C path
// sums rows first (pool_cpu.c), so the two differ by reordering: within
// KH·KW float32 roundings of the terms' magnitude (inputs in [-1, 1]).
func TestCUDAAvgPool2D(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(23, 24))
	for _, c := range poolCUDACases {
		atol := float64(c.p.KernelH*c.p.KernelW) * 0x1p-24
		x, dx := devRand(t, rng, c.n, c.c, c.h, c.w)
		shape, err := engine.Pool2DOutputShape(x.Shape(), c.p)
		opsMust(t, err)
		out := engine.New(engine.Float32, shape...)
		opsMust(t, engine.AvgPool2DForward(out, x, c.p))
		dout := dev(t, engine.New(engine.Float32, shape...))
		opsMust(t, engine.AvgPool2DForward(dout, dx, c.p))
		checkKernels(t, []string{"avgpool2d_forward_f32"}, "AvgPool2DForward", dout, out, atol, 1e-6)

		g, dg := devRand(t, rng, shape...)
		want := engine.New(engine.Float32, x.Shape()...)
		opsMust(t, engine.AvgPool2DBackward(want, g, c.p))
		got := dev(t, engine.New(engine.Float32, x.Shape()...))
		got.Fill(7)
		opsMust(t, engine.AvgPool2DBackward(got, dg, c.p))
		checkKernels(t, []string{"avgpool2d_backward_f32"}, "AvgPool2DBackward", got, want, atol, 1e-6)
	}
}

func TestCUDAGlobalPool(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(25, 26))
	for _, s := range [][4]int{{1, 1, 1, 1}, {2, 3, 7, 9}, {1, 2, 17, 19}, {3, 1, 1, 5}} {
		x, dx := devRand(t, rng, s[:]...)
		quantised(x) // ties for the max
		if s[2]*s[3] > 10 {
			x.SetAt(3, math.NaN()) // plane 0 has a NaN; the others do not
		}
		dx = dev(t, x)
		for _, oshape := range [][]int{{s[0], s[1]}, {s[0], s[1], 1, 1}} {
			out := engine.New(engine.Float32, oshape...)
			opsMust(t, engine.GlobalAvgPoolForward(out, x))
			dout := dev(t, engine.New(engine.Float32, oshape...))
			opsMust(t, engine.GlobalAvgPoolForward(dout, dx))
			checkKernels(t, []string{"global_avgpool_forward_f32"}, "GlobalAvgPoolForward", dout, out, 1e-7, 1e-5)

			g, dg := devRand(t, rng, oshape...)
			want := engine.New(engine.Float32, s[:]...)
			opsMust(t, engine.GlobalAvgPoolBackward(want, g))
			got := dev(t, engine.New(engine.Float32, s[:]...))
			opsMust(t, engine.GlobalAvgPoolBackward(got, dg))
			checkKernels(t, []string{"global_avgpool_backward_f32"}, "GlobalAvgPoolBackward", got, want, 0, 0)
		}

		out := engine.New(engine.Float32, s[0], s[1])
		am := make([]int32, out.Len())
		opsMust(t, engine.GlobalMaxPoolForward(out, am, x))
		dout := dev(t, engine.New(engine.Float32, s[0], s[1]))
		dam := make([]int32, out.Len())
		opsMust(t, engine.GlobalMaxPoolForward(dout, dam, dx))
		checkKernels(t, []string{"global_maxpool_forward_f32"}, "GlobalMaxPoolForward", dout, out, 0, 0)
		poolArgmax(t, "GlobalMaxPoolForward", dam, am)

		g, dg := devRand(t, rng, s[0], s[1])
		want := engine.New(engine.Float32, s[:]...)
		opsMust(t, engine.GlobalMaxPoolBackward(want, g, am))
		got := dev(t, engine.New(engine.Float32, s[:]...))
		got.Fill(7)
		opsMust(t, engine.GlobalMaxPoolBackward(got, dg, dam))
		checkKernels(t, []string{"global_maxpool_backward_f32"}, "GlobalMaxPoolBackward", got, want, 0, 0)
		opsMust(t, engine.GlobalMaxPoolBackward(got, dg, slices.Clone(am)))
		checkKernels(t, []string{"global_maxpool_backward_f32"}, "GlobalMaxPoolBackward from host argmax", got, want, 0, 0)
	}
}

// The channel gate's fused input gradient on the device: the CPU's bits,
// -0 and NaN included, with dx over dout and argmaxes from the host.
func TestCUDAChannelGateBackward(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(33, 34))
	for _, s := range [][4]int{{1, 1, 1, 1}, {2, 3, 7, 9}, {3, 5, 1, 1}, {4, 16, 16, 16}} {
		dout, scale4, dAvg, dMax, am := channelGateCase(t, rng, engine.Float32, s)
		want := engine.New(engine.Float32, s[:]...)
		opsMust(t, engine.ChannelGateBackward(want, dout, scale4, dAvg, dMax, am))
		got := dev(t, engine.New(engine.Float32, s[:]...))
		got.Fill(7)
		ddout := dev(t, dout)
		opsMust(t, engine.ChannelGateBackward(got, ddout, dev(t, scale4), dev(t, dAvg), dev(t, dMax), slices.Clone(am)))
		checkKernels(t, []string{"channel_gate_backward_f32"}, "ChannelGateBackward", got, want, 0, 0)
		opsMust(t, engine.ChannelGateBackward(ddout, ddout, dev(t, scale4), dev(t, dAvg), dev(t, dMax), slices.Clone(am)))
		checkKernels(t, []string{"channel_gate_backward_f32"}, "ChannelGateBackward over dout", ddout, want, 0, 0)
		for name, g := range map[string]*engine.Tensor{"dx": got, "dx over dout": ddout} {
			if !sameTensorBits(toHost(t, g), want) { // checkKernels sees no sign of zero
				t.Errorf("%v %s: other bits than the CPU's", s, name)
			}
		}
	}
}

// The spatial gate's fused input gradient on the device: the CPU's bits.
func TestCUDASpatialGateBackward(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(37, 38))
	for _, s := range [][4]int{{1, 1, 1, 1}, {2, 3, 7, 9}, {3, 5, 1, 1}, {4, 16, 16, 16}} {
		dout, att, dPooled, am := spatialGateCase(t, rng, engine.Float32, s)
		want := engine.New(engine.Float32, s[:]...)
		opsMust(t, engine.SpatialGateBackward(want, dout, att, dPooled, am))
		got := dev(t, engine.New(engine.Float32, s[:]...))
		got.Fill(7)
		ddout := dev(t, dout)
		opsMust(t, engine.SpatialGateBackward(got, ddout, dev(t, att), dev(t, dPooled), slices.Clone(am)))
		checkKernels(t, []string{"spatial_gate_backward_f32"}, "SpatialGateBackward", got, want, 0, 0)
		opsMust(t, engine.SpatialGateBackward(ddout, ddout, dev(t, att), dev(t, dPooled), slices.Clone(am)))
		checkKernels(t, []string{"spatial_gate_backward_f32"}, "SpatialGateBackward over dout", ddout, want, 0, 0)
		for name, g := range map[string]*engine.Tensor{"dx": got, "dx over dout": ddout} {
			if !sameTensorBits(toHost(t, g), want) {
				t.Errorf("%v %s: other bits than the CPU's", s, name)
			}
		}
	}
}

func TestCUDAChannelPool(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(27, 28))
	for _, s := range [][4]int{{1, 1, 1, 1}, {2, 5, 7, 9}, {1, 9, 4, 5}, {2, 3, 1, 1}} {
		x := randTensor(rng, engine.Float32, s[:]...)
		quantised(x)
		dx := dev(t, x)
		n, hw := s[0], s[2]*s[3]
		out := engine.New(engine.Float32, n, 2, s[2], s[3])
		am := make([]int32, n*hw)
		opsMust(t, engine.ChannelPoolForward(out, am, x))
		dout := dev(t, engine.New(engine.Float32, n, 2, s[2], s[3]))
		dam := make([]int32, n*hw)
		opsMust(t, engine.ChannelPoolForward(dout, dam, dx))
		checkKernels(t, []string{"channelpool_forward_f32"}, "ChannelPoolForward", dout, out, 0, 0)
		poolArgmax(t, "ChannelPoolForward", dam, am)

		g, dg := devRand(t, rng, n, 2, s[2], s[3])
		want := engine.New(engine.Float32, s[:]...)
		opsMust(t, engine.ChannelPoolBackward(want, g, am))
		got := dev(t, engine.New(engine.Float32, s[:]...))
		got.Fill(7)
		opsMust(t, engine.ChannelPoolBackward(got, dg, dam))
		checkKernels(t, []string{"channelpool_backward_f32"}, "ChannelPoolBackward", got, want, 0, 0)
		opsMust(t, engine.ChannelPoolBackward(got, dg, slices.Clone(am)))
		checkKernels(t, []string{"channelpool_backward_f32"}, "ChannelPoolBackward from host argmax", got, want, 0, 0)
	}
	// A channel index out of range is refused.
	_, dx := devRand(t, rng, 1, 3, 2, 2)
	_, dg := devRand(t, rng, 1, 2, 2, 2)
	if err := engine.ChannelPoolBackward(dx, dg, []int32{0, 3, 1, 2}); err == nil {
		t.Fatal("ChannelPoolBackward accepted channel 3 of 3")
	}
}

func TestCUDATranspose12(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(29, 30))
	for _, s := range [][3]int{{1, 1, 1}, {2, 33, 31}, {3, 5, 70}, {1, 64, 2}} {
		x, dx := devRand(t, rng, s[:]...)
		want := engine.New(engine.Float32, s[0], s[2], s[1])
		opsMust(t, engine.Transpose12(want, x))
		got := dev(t, engine.New(engine.Float32, s[0], s[2], s[1]))
		opsMust(t, engine.Transpose12(got, dx))
		checkKernels(t, []string{"transpose12_f32"}, "Transpose12", got, want, 0, 0)
		back := dev(t, engine.New(engine.Float32, s[:]...))
		opsMust(t, engine.Transpose12(back, got)) // the backward pass
		checkKernels(t, []string{"transpose12_f32"}, "Transpose12 back", back, x, 0, 0)
	}
}

// The KILN_CUDA_CHECK rerun of the pooling ops passes, argmax included.
func TestCUDACheckSwitchPooling(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDACheck(true)
	defer engine.SetCUDACheck(false)
	rng := rand.New(rand.NewPCG(31, 32))
	c := poolCUDACases[2]
	x := randTensor(rng, engine.Float32, c.n, c.c, c.h, c.w)
	quantised(x)
	dx := dev(t, x)
	shape, _ := engine.Pool2DOutputShape(x.Shape(), c.p)
	out := dev(t, engine.New(engine.Float32, shape...))
	am := make([]int32, out.Len())
	opsMust(t, engine.MaxPool2DForward(out, am, dx, c.p))
	_, dg := devRand(t, rng, shape...)
	grad := dev(t, engine.New(engine.Float32, x.Shape()...))
	opsMust(t, engine.MaxPool2DBackward(grad, dg, am, c.p))
	opsMust(t, engine.MaxPool2DReLUForward(out, am, dx, c.p))
	opsMust(t, engine.MaxPool2DReLUBackward(grad, dg, out, am, c.p))
	opsMust(t, engine.AvgPool2DForward(out, dx, c.p))
	opsMust(t, engine.AvgPool2DBackward(grad, dg, c.p))

	cp := dev(t, engine.New(engine.Float32, c.n, 2, c.h, c.w))
	cam := make([]int32, c.n*c.h*c.w)
	opsMust(t, engine.ChannelPoolForward(cp, cam, dx))
	opsMust(t, engine.ChannelPoolBackward(grad, cp, cam))
	gm := dev(t, engine.New(engine.Float32, c.n, c.c))
	gam := make([]int32, c.n*c.c)
	opsMust(t, engine.GlobalMaxPoolForward(gm, gam, dx))
	opsMust(t, engine.GlobalMaxPoolBackward(grad, gm, gam))
	opsMust(t, engine.GlobalAvgPoolForward(gm, dx))
	opsMust(t, engine.GlobalAvgPoolBackward(grad, gm))
}

// Empty batches and planes are no work and no error, as on the CPU.
func TestCUDAPoolingEmpty(t *testing.T) {
	cudaOrSkip(t)
	p := engine.Pool2DSquare(2, 0, 0)
	x := dev(t, engine.New(engine.Float32, 0, 3, 4, 4))
	out := dev(t, engine.New(engine.Float32, 0, 3, 2, 2))
	opsMust(t, engine.MaxPool2DForward(out, []int32{}, x, p))
	opsMust(t, engine.MaxPool2DBackward(x, out, []int32{}, p))
	opsMust(t, engine.AvgPool2DForward(out, x, p))
	opsMust(t, engine.AvgPool2DBackward(x, out, p))
	opsMust(t, engine.ChannelPoolForward(dev(t, engine.New(engine.Float32, 0, 2, 4, 4)), []int32{}, x))
	opsMust(t, engine.ChannelPoolBackward(x, dev(t, engine.New(engine.Float32, 0, 2, 4, 4)), []int32{}))
	opsMust(t, engine.GlobalMaxPoolForward(dev(t, engine.New(engine.Float32, 0, 3)), []int32{}, x))
	opsMust(t, engine.GlobalMaxPoolBackward(x, dev(t, engine.New(engine.Float32, 0, 3)), []int32{}))
	opsMust(t, engine.Transpose12(dev(t, engine.New(engine.Float32, 0, 4, 3)), dev(t, engine.New(engine.Float32, 0, 3, 4))))
	// An empty plane has no element to pick.
	flat := dev(t, engine.New(engine.Float32, 1, 2, 0, 3))
	if err := engine.GlobalMaxPoolBackward(flat, dev(t, engine.New(engine.Float32, 1, 2)), []int32{0, 0}); err == nil {
		t.Fatal("GlobalMaxPoolBackward accepted argmax into empty planes")
	}
}

// TestCUDAMaxPool2DReLU: the fused ReLU and max pool on the GPU against the
// CPU's fused op, bit for bit: ties, all-negative windows, zeros, NaN and
// infinities, on every pooling case; the argmax too.
func TestCUDAMaxPool2DReLU(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(23, 24))
	fwd, bwd := []string{"maxpool2d_forward_f32"}, []string{"maxpool2d_backward_f32"}
	for ci, c := range poolCUDACases {
		for variant := range 3 { // random, ties and zeros, with NaN and ±inf
			x := randTensor(rng, engine.Float32, c.n, c.c, c.h, c.w)
			if variant > 0 {
				quantised(x)
				for i := 0; i < x.Len(); i += 5 {
					x.SetAt(i, 0)
				}
			}
			if variant == 2 {
				for i := 0; i < x.Len(); i += 7 {
					x.SetAt(i, []float64{math.NaN(), math.Inf(-1), math.Inf(1)}[i%3])
				}
			}
			shape, err := engine.Pool2DOutputShape(x.Shape(), c.p)
			opsMust(t, err)
			out, am := engine.New(engine.Float32, shape...), make([]int32, engine.New(engine.Float32, shape...).Len())
			opsMust(t, engine.MaxPool2DReLUForward(out, am, x, c.p))
			dout, dam := dev(t, engine.New(engine.Float32, shape...)), make([]int32, len(am))
			opsMust(t, engine.MaxPool2DReLUForward(dout, dam, dev(t, x), c.p))
			checkKernels(t, fwd, fmt.Sprintf("case %d/%d MaxPool2DReLUForward", ci, variant), dout, out, 0, 0)
			poolArgmax(t, "MaxPool2DReLUForward", dam, am)

			g, dg := devRand(t, rng, shape...)
			want := engine.New(engine.Float32, x.Shape()...)
			opsMust(t, engine.MaxPool2DReLUBackward(want, g, out, am, c.p))
			got := dev(t, engine.New(engine.Float32, x.Shape()...))
			opsMust(t, got.Fill(7)) // overwritten, not added to
			opsMust(t, engine.MaxPool2DReLUBackward(got, dg, dout, dam, c.p))
			checkKernels(t, bwd, fmt.Sprintf("case %d/%d MaxPool2DReLUBackward", ci, variant), got, want, 0, 0)
		}
	}
}

// The 2×2 pooling kernels that move four floats of a row at a time (rows
// of a multiple of 4, the four-float side 16-byte aligned) give the CPU's
// bits, as the general kernels do on a view one float into its buffer;
// odd H leaves a last row that no window holds (zero in dx). Ties, NaN and
// -inf are in the inputs.
func TestCUDAPool2x2RowsOfFour(t *testing.T) {
	cudaOrSkip(t)
	p := engine.Pool2DSquare(2, 2, 0)
	rng := rand.New(rand.NewPCG(77, 78))
	for _, shape := range [][]int{{2, 3, 7, 8}, {1, 2, 6, 12}, {1, 1, 2, 4}} {
		x := randTensor(rng, engine.Float32, shape...)
		quantised(x)
		for i := 0; i < x.Len(); i += 5 {
			x.SetAt(i, []float64{math.NaN(), math.Inf(-1), -0.25, 0}[i%4])
		}
		oshape, err := engine.Pool2DOutputShape(shape, p)
		opsMust(t, err)
		g := randTensor(rng, engine.Float32, oshape...)
		// place puts h on the device, aligned (the four-float kernels) or
		// one float into a buffer (the general ones).
		place := func(h *engine.Tensor, offset bool) *engine.Tensor {
			if !offset {
				return dev(t, h)
			}
			buf := dev(t, engine.New(engine.Float32, h.Len()+1))
			v, err := buf.Rows(1, h.Len())
			opsMust(t, err)
			v, err = v.Reshape(h.Shape()...)
			opsMust(t, err)
			opsMust(t, v.CopyFrom(h))
			return v
		}
		for _, relu := range []bool{false, true} {
			// The CPU's answers.
			out := engine.New(engine.Float32, oshape...)
			am := make([]int32, out.Len())
			dx := engine.New(engine.Float32, shape...)
			fwd, bwd := engine.MaxPool2DForward, func(dx, dout, out *engine.Tensor, am []int32) error {
				return engine.MaxPool2DBackward(dx, dout, am, p)
			}
			if relu {
				fwd, bwd = engine.MaxPool2DReLUForward, func(dx, dout, out *engine.Tensor, am []int32) error {
					return engine.MaxPool2DReLUBackward(dx, dout, out, am, p)
				}
			}
			opsMust(t, fwd(out, am, x, p))
			opsMust(t, bwd(dx, g, out, am))
			for _, offset := range []bool{false, true} {
				what := fmt.Sprintf("%v relu %v offset %v", shape, relu, offset)
				dout, ddx := place(engine.New(engine.Float32, oshape...), offset), place(engine.New(engine.Float32, shape...), offset)
				opsMust(t, ddx.Fill(7)) // overwritten, not added to
				dam := make([]int32, out.Len())
				opsMust(t, fwd(dout, dam, place(x, offset), p))
				opsMust(t, bwd(ddx, place(g, offset), dout, dam))
				checkKernels(t, []string{"maxpool2x2_forward_f32", "maxpool2d_forward_f32"}, "max forward "+what, dout, out, 0, 0)
				poolArgmax(t, "max forward "+what, dam, am)
				checkKernels(t, []string{"maxpool2x2_backward_f32", "maxpool2d_backward_f32"}, "max backward "+what, ddx, dx, 0, 0)
			}
		}
		out, dx := engine.New(engine.Float32, oshape...), engine.New(engine.Float32, shape...)
		opsMust(t, engine.AvgPool2DForward(out, x, p))
		opsMust(t, engine.AvgPool2DBackward(dx, g, p))
		for _, offset := range []bool{false, true} {
			what := fmt.Sprintf("%v offset %v", shape, offset)
			dout, ddx := place(engine.New(engine.Float32, oshape...), offset), place(engine.New(engine.Float32, shape...), offset)
			opsMust(t, ddx.Fill(7))
			opsMust(t, engine.AvgPool2DForward(dout, place(x, offset), p))
			opsMust(t, engine.AvgPool2DBackward(ddx, place(g, offset), p))
			checkKernels(t, []string{"avgpool2x2_forward_f32", "avgpool2d_forward_f32"}, "avg forward "+what, dout, out, 0, 0)
			checkKernels(t, []string{"avgpool2x2_backward_f32", "avgpool2d_backward_f32"}, "avg backward "+what, ddx, dx, 0, 0)
		}
	}
}
