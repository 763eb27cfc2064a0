package engine_test

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// devRandRange is devRand scaled to [-r, r), with specials written over the
// first elements (as many as fit).
func devRandRange(t testing.TB, rng *rand.Rand, r float64, specials []float64, shape ...int) (cpu, gpu *engine.Tensor) {
	t.Helper()
	cpu = randTensor(rng, engine.Float32, shape...)
	engine.Scale(cpu, r)
	for i, v := range specials {
		if i < cpu.Len() {
			cpu.SetAt(i, v)
		}
	}
	return cpu, dev(t, cpu)
}

// cudaEltSizes are eltSizes thinned for the emulator (each launch starts a
// thread per CUDA thread): one element, either side of the block of 256,
// and more than the 16 blocks of a 4096-element grid.
var cudaEltSizes = []int{1, 255, 257, 4099}

// Values where the activations saturate, change sign or underflow.
var activationSpecials = []float64{0, math.Copysign(0, -1), 1e-3, -1e-3, 10, -10, 30, -30, 100, -100, math.NaN()}

// Tolerances against the CPU's float32 op, which uses its own expf and erf
// approximations (erf within 1.5e-7 absolute, expf about 2 ulp); CUDA's
// erff/expf/tanhf are within a few ulp. The sum of both is below 1e-6
// absolute plus 1e-5 relative; ReLU is exact on both.
var activationTol = map[engine.Activation][2]float64{
	engine.ReLU:    {0, 0},
	engine.GELU:    {1e-6, 1e-5},
	engine.Sigmoid: {1e-6, 1e-5},
	engine.Tanh:    {1e-6, 1e-5},
}

// activationKernels are each kind's forward and backward kernels.
var activationKernels = map[engine.Activation][2]string{
	engine.ReLU:    {"relu_forward_f32", "relu_backward_f32"},
	engine.GELU:    {"gelu_forward_f32", "gelu_backward_f32"},
	engine.Sigmoid: {"sigmoid_forward_f32", "sigmoid_backward_f32"},
	engine.Tanh:    {"tanh_forward_f32", "tanh_backward_f32"},
}

func TestCUDAActivation(t *testing.T) {
	cudaOrSkip(t)
	rng := rand.New(rand.NewPCG(11, 12))
	for _, kind := range activationKinds {
		fwd, bwd := []string{activationKernels[kind][0]}, []string{activationKernels[kind][1]}
		tol := activationTol[kind]
		for _, n := range cudaEltSizes {
			x, dx := devRandRange(t, rng, 4, activationSpecials, n)
			y := engine.New(engine.Float32, n)
			opsMust(t, engine.ActivationForward(y, x, kind))
			dy := dev(t, engine.New(engine.Float32, n))
			opsMust(t, engine.ActivationForward(dy, dx, kind))
			checkKernels(t, fwd, kind.String()+" forward", dy, y, tol[0], tol[1])

			// In place: out is x.
			inPlace := dev(t, x)
			opsMust(t, engine.ActivationForward(inPlace, inPlace, kind))
			checkKernels(t, fwd, kind.String()+" forward in place", inPlace, y, tol[0], tol[1])

			// Backward from the CPU's forward values, so only the backward
			// kernel is measured.
			g, dg := devRand(t, rng, n)
			dyRef := dev(t, y)
			gradX := engine.New(engine.Float32, n)
			opsMust(t, engine.ActivationBackward(gradX, g, x, y, kind))
			dgradX := dev(t, engine.New(engine.Float32, n))
			opsMust(t, engine.ActivationBackward(dgradX, dg, dx, dyRef, kind))
			checkKernels(t, bwd, kind.String()+" backward", dgradX, gradX, tol[0], tol[1])

			// dx is dout, and the input the activation does not read is nil.
			var xin, yin *engine.Tensor = nil, dyRef
			if kind == engine.GELU {
				xin, yin = dx, nil
			}
			opsMust(t, engine.ActivationBackward(dg, dg, xin, yin, kind))
			checkKernels(t, bwd, kind.String()+" backward in place", dg, gradX, tol[0], tol[1])
		}
	}
	// ReLU's backward from the input alone (out nil), as the CPU allows.
	x, dx := devRand(t, rng, 300)
	g, dg := devRand(t, rng, 300)
	want := engine.New(engine.Float32, 300)
	opsMust(t, engine.ActivationBackward(want, g, x, nil, engine.ReLU))
	got := dev(t, engine.New(engine.Float32, 300))
	opsMust(t, engine.ActivationBackward(got, dg, dx, nil, engine.ReLU))
	checkKernels(t, []string{"relu_backward_f32"}, "relu backward from x", got, want, 0, 0)
}

// The KILN_CUDA_CHECK rerun sees in-place calls as in place.
func TestCUDACheckSwitchInPlaceActivation(t *testing.T) {
	cudaOrSkip(t)
	engine.SetCUDACheck(true)
	defer engine.SetCUDACheck(false)
	rng := rand.New(rand.NewPCG(13, 14))
	_, dx := devRand(t, rng, 300)
	_, dg := devRand(t, rng, 300)
	opsMust(t, engine.ActivationForward(dx, dx, engine.Tanh))
	opsMust(t, engine.ActivationBackward(dg, dg, nil, dx, engine.Tanh))
	opsMust(t, engine.ActivationBackward(dg, dg, dx, nil, engine.GELU))
}

// Mixed devices and float64 are errors, not crashes.
func TestCUDAActivationErrors(t *testing.T) {
	cudaOrSkip(t)
	x := engine.New(engine.Float32, 5)
	if err := engine.ActivationForward(dev(t, x), x, engine.ReLU); err == nil {
		t.Fatal("a CUDA out and a CPU x were accepted")
	}
	if err := engine.ActivationForward(dev(t, x), dev(t, engine.New(engine.Float32, 6)), engine.ReLU); err == nil {
		t.Fatal("shapes 5 and 6 were accepted")
	}
}

// ReLU takes four elements at a time on 16-byte aligned tensors and one at
// a time on views that are not: the same bits (the emulator aborts on a
// misaligned 128-bit access, as the GPU faults).
func TestCUDAReLUFourAtATimeAndViews(t *testing.T) {
	cudaOrSkip(t)
	const n = 103
	rng := rand.New(rand.NewPCG(13, 14))
	hx, hd := randTensor(rng, engine.Float32, n), randTensor(rng, engine.Float32, n)
	view := func(h *engine.Tensor) *engine.Tensor {
		buf := dev(t, engine.New(engine.Float32, n+1))
		v, err := buf.Rows(1, n)
		opsMust(t, err)
		opsMust(t, v.CopyFrom(h))
		return v
	}
	whole := func(h *engine.Tensor) *engine.Tensor { return dev(t, h) }
	var res [2][2]*engine.Tensor
	for k, place := range []func(*engine.Tensor) *engine.Tensor{whole, view} {
		x, d := place(hx), place(hd)
		y, dx := place(engine.New(engine.Float32, n)), place(engine.New(engine.Float32, n))
		opsMust(t, engine.ActivationForward(y, x, engine.ReLU))
		opsMust(t, engine.ActivationBackward(dx, d, x, y, engine.ReLU))
		for j, r := range []*engine.Tensor{y, dx} {
			h, err := engine.ToCPU(nil, r)
			opsMust(t, err)
			res[k][j] = h
		}
	}
	if !bitsEqual(res[0][0], res[1][0]) || !bitsEqual(res[0][1], res[1][1]) {
		t.Error("ReLU on aligned tensors and on views one float in differ")
	}
}
