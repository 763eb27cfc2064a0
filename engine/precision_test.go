package engine

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestParsePrecision(t *testing.T) {
	for s, want := range map[string]Precision{"": FP32, "fp32": FP32, "TF32": TF32, " bf16": BF16, "bfloat16": BF16} {
		if p, err := ParsePrecision(s); err != nil || p != want {
			t.Errorf("ParsePrecision(%q) = %v, %v; want %v", s, p, err, want)
		}
	}
	if _, err := ParsePrecision("fp16"); err == nil || !strings.Contains(err.Error(), "want fp32, tf32 or bf16") {
		t.Errorf("ParsePrecision(fp16): %v", err)
	}
	if err := TF32.Check(CPU); err == nil || !strings.Contains(err.Error(), "tf32 is not available on the cpu") {
		t.Errorf("tf32 on the cpu: %v", err)
	}
	if err := BF16.Check(CUDA); err != nil {
		t.Errorf("bf16 on cuda: %v", err)
	}
	if err := TF32.Check(CUDA); err != nil {
		t.Errorf("tf32 on cuda: %v", err)
	}
	if got := BF16.Check(CPU) == nil; got != CPUHasBF16() {
		t.Errorf("bf16 on the cpu: Check says %v, CPUHasBF16 %v", got, CPUHasBF16())
	}
}

// A bf16 weight on a CPU level without bf16 arithmetic is refused by every
// product, never run in float32.
func TestBF16ProductsRefusedWithoutBF16(t *testing.T) {
	if !CPUHasBF16() {
		t.Skip("skipped: this CPU has no AVX512_BF16, so no level to step down from")
	}
	defer func(was string) { _ = SetCPUISA(was) }(CPUISA())
	if err := SetCPUISA("avx2"); err != nil {
		t.Fatal(err)
	}
	x, w, out := New(Float32, 2, 3), New(Float32, 4, 3), New(Float32, 2, 4)
	w.SetPrecision(BF16)
	err := LinearForward(out, x, w, nil)
	if err == nil || !strings.Contains(err.Error(), "ISA level avx2") {
		t.Errorf("LinearForward at avx2 with a bf16 weight: %v", err)
	}
	cx, cw, cy := New(Float32, 1, 1, 4, 4), New(Float32, 2, 1, 3, 3), New(Float32, 1, 2, 2, 2)
	cw.SetPrecision(BF16)
	if err := Conv2DForward(cy, cx, cw, nil, Conv2DParams{}); err == nil {
		t.Error("Conv2DForward at avx2 with a bf16 weight ran")
	}
}

// bf16Tol is the error a float32 sum of n products can have: n+2 roundings
// of 2⁻²⁴ relative to the sum of the products' magnitudes.
func bf16Tol(n int, absSum float64) float64 { return float64(n+2)*math.Ldexp(1, -24)*absSum + 1e-30 }

// roundedCopy is t with every value rounded to bf16 (as float64), and its
// magnitudes: the operands a bf16 product multiplies.
func roundedCopy(t *testing.T, s []float32, shape ...int) (r, abs *Tensor) {
	t.Helper()
	rv, av := make([]float64, len(s)), make([]float64, len(s))
	for i, v := range s {
		rv[i] = float64(ToBF16(v).Float32())
		av[i] = math.Abs(rv[i])
	}
	r, err := FromFloat64(rv, shape...)
	if err == nil {
		abs, err = FromFloat64(av, shape...)
	}
	if err != nil {
		t.Fatal(err)
	}
	return r, abs
}

// checkRoundedProduct holds got to want (the float64 product of the rounded
// operands) within bf16Tol of the magnitudes' product abs, and returns
// whether got differs anywhere from the float32 result f32 (so a test can
// tell that the products were rounded at all).
func checkRoundedProduct(t *testing.T, what string, got []float32, want, abs []float64, k int, f32 []float32) bool {
	t.Helper()
	differs := false
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); d > bf16Tol(k, abs[i]) {
			t.Fatalf("%s[%d] = %g, the float64 product of the bf16 operands %g (tolerance %g)", what, i, got[i], want[i], bf16Tol(k, abs[i]))
		}
		differs = differs || got[i] != f32[i]
	}
	return differs
}

func TestLinearBF16MultipliesRoundedInputs(t *testing.T) {
	if !CPUHasBF16() {
		t.Skip("skipped: this CPU has no AVX512_BF16 (or the ISA level in use is below avx512)")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, s := range [][3]int{{1, 1, 1}, {7, 33, 5}, {64, 300, 130}, {200, 784, 100}} {
		n, in, o := s[0], s[1], s[2]
		xs, ws, bs, ds := randF32(rng, n*in), randF32(rng, o*in), randF32(rng, o), randF32(rng, n*o)
		run := func(p Precision) (out, dx, dw, db []float32) {
			x, _ := FromFloat32(append([]float32(nil), xs...), n, in)
			w, _ := FromFloat32(append([]float32(nil), ws...), o, in)
			b, _ := FromFloat32(append([]float32(nil), bs...), o)
			d, _ := FromFloat32(append([]float32(nil), ds...), n, o)
			w.SetPrecision(p)
			y, gx, gw, gb := New(Float32, n, o), New(Float32, n, in), New(Float32, o, in), New(Float32, o)
			if err := LinearForward(y, x, w, b); err != nil {
				t.Fatal(err)
			}
			if err := LinearBackward(gx, gw, gb, d, x, w); err != nil {
				t.Fatal(err)
			}
			return y.f32, gx.f32, gw.f32, gb.f32
		}
		out, dx, dw, db := run(BF16)
		out2, dx2, dw2, _ := run(BF16)
		for i := range out {
			if out[i] != out2[i] || dx[i%len(dx)] != dx2[i%len(dx)] || dw[i%len(dw)] != dw2[i%len(dw)] {
				t.Fatalf("%v: a second bf16 run gave other bits", s)
			}
		}
		f32out, f32dx, f32dw, f32db := run(FP32)
		rx, ax := roundedCopy(t, xs, n, in)
		rw, aw := roundedCopy(t, ws, o, in)
		rd, ad := roundedCopy(t, ds, n, o)
		b64, _ := FromFloat64(f64s(bs), o)
		want, wantAbs := New(Float64, n, o), New(Float64, n, o)
		_ = LinearForward(want, rx, rw, b64)
		_ = LinearForward(wantAbs, ax, aw, nil)
		for i := range wantAbs.f64 {
			wantAbs.f64[i] += math.Abs(b64.f64[i%o])
		}
		differs := checkRoundedProduct(t, "out", out, want.f64, wantAbs.f64, in, f32out)
		wdx, adx, wdw, adw := New(Float64, n, in), New(Float64, n, in), New(Float64, o, in), New(Float64, o, in)
		_ = LinearBackward(wdx, wdw, nil, rd, rx, rw)
		_ = LinearBackward(adx, adw, nil, ad, ax, aw)
		differs = checkRoundedProduct(t, "dx", dx, wdx.f64, adx.f64, o, f32dx) || differs
		differs = checkRoundedProduct(t, "dw", dw, wdw.f64, adw.f64, n, f32dw) || differs
		for i := range db { // the bias gradient is a float32 reduction: no rounding
			if db[i] != f32db[i] {
				t.Fatalf("%v: db[%d] = %g in bf16, %g in fp32", s, i, db[i], f32db[i])
			}
		}
		if !differs && n*in > 1 {
			t.Errorf("%v: bf16 gave the float32 bits everywhere", s)
		}
	}
}

// On a CPU with AMX each shape runs on both paths (VDPBF16PS and AMX
// tiles), each held to the same bound and to its own bits on a second run;
// the AMX path must give other bits than VDPBF16PS's somewhere in each pass
// (TDPBF16PS sums in another order), or it was not taken.
func TestConv2DBF16MultipliesRoundedInputs(t *testing.T) {
	if !CPUHasBF16() {
		t.Skip("skipped: this CPU has no AVX512_BF16 (or the ISA level in use is below avx512)")
	}
	defer useAMX(true)
	paths := []bool{false}
	if CPUHasAMX() {
		paths = append(paths, true)
	} else {
		t.Log("this CPU has no AMX: the VDPBF16PS path only")
	}
	amxDiffers := map[string]bool{}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct {
		x, w []int
		p    Conv2DParams
	}{
		{[]int{2, 3, 9, 9}, []int{8, 3, 3, 3}, Conv2DSquare(1, 1, 1, 1)},
		{[]int{3, 4, 8, 7}, []int{6, 2, 3, 3}, Conv2DSquare(2, 1, 1, 2)},
		{[]int{2, 16, 5, 5}, []int{20, 16, 1, 1}, Conv2DSquare(1, 0, 1, 1)},
		{[]int{1, 1, 28, 28}, []int{6, 1, 5, 5}, Conv2DSquare(1, 2, 1, 1)},
		{[]int{5, 4, 10, 11}, []int{6, 2, 3, 3}, Conv2DSquare(1, 2, 2, 2)},  // dilated, grouped
		{[]int{2, 40, 6, 6}, []int{33, 40, 3, 3}, Conv2DSquare(1, 1, 1, 1)}, // k past one slice
		// AMX's shapes (and their edges), through the wide frame: a tail of
		// 16 rows, one row of tiles, 1×1, dilated, grouped, a lone channel,
		// 5×5 over 28×28.
		{[]int{2, 32, 9, 9}, []int{48, 32, 3, 3}, Conv2DSquare(1, 1, 1, 1)},
		{[]int{3, 16, 7, 6}, []int{16, 16, 3, 3}, Conv2DSquare(1, 1, 1, 1)},
		{[]int{2, 32, 5, 5}, []int{32, 32, 1, 1}, Conv2DSquare(1, 0, 1, 1)},
		{[]int{2, 16, 12, 11}, []int{32, 16, 3, 3}, Conv2DSquare(1, 2, 2, 1)},
		{[]int{2, 64, 8, 8}, []int{32, 32, 3, 3}, Conv2DSquare(1, 1, 1, 2)},
		{[]int{2, 27, 8, 9}, []int{24, 27, 3, 3}, Conv2DSquare(1, 1, 1, 1)},
		{[]int{1, 16, 28, 28}, []int{32, 16, 5, 5}, Conv2DSquare(1, 2, 1, 1)},
		// rows of whole 16-column chunks: stored straight into out and dx
		{[]int{2, 32, 16, 16}, []int{32, 32, 3, 3}, Conv2DSquare(1, 1, 1, 1)},
		{[]int{2, 32, 4, 16}, []int{16, 32, 1, 1}, Conv2DSquare(1, 0, 1, 1)},
		{[]int{2, 64, 16, 16}, []int{32, 32, 3, 3}, Conv2DSquare(1, 1, 1, 2)},
	} {
		ys, _ := Conv2DOutputShape(c.x, c.w, c.p)
		xs, ws, bs, ds := randF32(rng, numel(c.x)), randF32(rng, numel(c.w)), randF32(rng, c.w[0]), randF32(rng, numel(ys))
		run := func(p Precision) (out, dx, dw, db []float32) {
			x, _ := FromFloat32(append([]float32(nil), xs...), c.x...)
			w, _ := FromFloat32(append([]float32(nil), ws...), c.w...)
			b, _ := FromFloat32(append([]float32(nil), bs...), c.w[0])
			d, _ := FromFloat32(append([]float32(nil), ds...), ys...)
			w.SetPrecision(p)
			y, gx, gw, gb := New(Float32, ys...), New(Float32, c.x...), New(Float32, c.w...), New(Float32, c.w[0])
			if err := Conv2DForward(y, x, w, b, c.p); err != nil {
				t.Fatal(err)
			}
			if err := Conv2DBackward(gx, gw, gb, d, x, w, c.p); err != nil {
				t.Fatal(err)
			}
			return y.f32, gx.f32, gw.f32, gb.f32
		}
		f32out, f32dx, f32dw, f32db := run(FP32)
		var vdp [3][]float32 // the VDPBF16PS path's out, dx, dw
		for _, amx := range paths {
			useAMX(amx)
			out, dx, dw, db := run(BF16)
			again, dx2, dw2, _ := run(BF16)
			if !slices.Equal(out, again) || !slices.Equal(dx, dx2) || !slices.Equal(dw, dw2) {
				t.Fatalf("%v (amx %v): a second bf16 run gave other bits", c.x, amx)
			}
			if !amx {
				vdp = [3][]float32{out, dx, dw}
			} else {
				amxDiffers["out"] = amxDiffers["out"] || !slices.Equal(out, vdp[0])
				amxDiffers["dx"] = amxDiffers["dx"] || !slices.Equal(dx, vdp[1])
				amxDiffers["dw"] = amxDiffers["dw"] || !slices.Equal(dw, vdp[2])
			}
			rx, ax := roundedCopy(t, xs, c.x...)
			rw, aw := roundedCopy(t, ws, c.w...)
			rd, ad := roundedCopy(t, ds, ys...)
			b64, _ := FromFloat64(f64s(bs), c.w[0])
			want, wdx, wdw, _, err := Conv2DReference(rx, rw, b64, rd, c.p)
			if err != nil {
				t.Fatal(err)
			}
			abs, adx, adw, _, _ := Conv2DReference(ax, aw, nil, ad, c.p)
			plane := ys[2] * ys[3]
			for i := range abs {
				abs[i] += math.Abs(b64.f64[i/plane%c.w[0]])
			}
			kg := c.w[1] * c.w[2] * c.w[3]
			differs := checkRoundedProduct(t, "out", out, want, abs, kg, f32out)
			differs = checkRoundedProduct(t, "dx", dx, wdx, adx, c.w[0]*c.w[2]*c.w[3], f32dx) || differs
			differs = checkRoundedProduct(t, "dw", dw, wdw, adw, c.x[0]*plane, f32dw) || differs
			for i := range db { // float32 sums of dout in both, in other orders: float32's bound on them
				var mag float64
				for img := 0; img < c.x[0]; img++ {
					for _, v := range ds[(img*c.w[0]+i)*plane : (img*c.w[0]+i+1)*plane] {
						mag += math.Abs(float64(v))
					}
				}
				if math.Abs(float64(db[i]-f32db[i])) > 2*float64(c.x[0]*plane)*0x1p-24*mag+1e-6 {
					t.Fatalf("%v: db[%d] = %g in bf16, %g in fp32", c.x, i, db[i], f32db[i])
				}
			}
			if !differs {
				t.Errorf("%v: bf16 gave the float32 bits everywhere", c.x)
			}
		}
	}
	for _, pass := range []string{"out", "dx", "dw"} {
		if len(paths) > 1 && !amxDiffers[pass] {
			t.Errorf("%s: the AMX path gave VDPBF16PS's bits on every shape: it was not taken", pass)
		}
	}
}

// The SGU's token mixing in bf16: saved.Mixed is W·vn + b with W and vn
// (saved.Norm) rounded, and dW sums dvm·vnᵀ with dvm = dout⊙u rounded.
func TestSpatialGatingBF16MultipliesRoundedInputs(t *testing.T) {
	if !CPUHasBF16() {
		t.Skip("skipped: this CPU has no AVX512_BF16 (or the ISA level in use is below avx512)")
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for _, s := range [][3]int{{2, 5, 3}, {9, 16, 24}, {4, 64, 128}} {
		n, tk, d := s[0], s[1], s[2]
		z, _ := FromFloat32(randF32(rng, n*tk*2*d), n, tk, 2*d)
		w, _ := FromFloat32(randF32(rng, tk*tk), tk, tk)
		b, _ := FromFloat32(randF32(rng, tk), tk)
		dout, _ := FromFloat32(randF32(rng, n*tk*d), n, tk, d)
		w.SetPrecision(BF16)
		var saved SpatialGatingSaved
		saved.Ensure(Float32, n, tk, d)
		out, dz, dw := New(Float32, n, tk, d), New(Float32, n, tk, 2*d), New(Float32, tk, tk)
		if err := SpatialGatingForward(out, &saved, z, nil, nil, w, b, 1e-5); err != nil {
			t.Fatal(err)
		}
		if err := SpatialGatingBackward(dz, nil, nil, dw, nil, dout, z, &saved, nil, w); err != nil {
			t.Fatal(err)
		}
		rw, _ := roundedCopy(t, w.f32, tk, tk)
		want, abs := make([]float64, n*tk*d), make([]float64, n*tk*d)
		wantDW, absDW := make([]float64, tk*tk), make([]float64, tk*tk)
		for i := 0; i < n; i++ {
			vn, _ := roundedCopy(t, saved.Norm.f32[i*tk*d:(i+1)*tk*d], tk, d)
			dvm := make([]float32, tk*d)
			for r := 0; r < tk; r++ {
				for j := 0; j < d; j++ {
					dvm[r*d+j] = dout.f32[(i*tk+r)*d+j] * z.f32[(i*tk+r)*2*d+j]
				}
			}
			rdvm, _ := roundedCopy(t, dvm, tk, d)
			for r := 0; r < tk; r++ {
				for j := 0; j < d; j++ {
					sum, mag := float64(b.f32[r]), math.Abs(float64(b.f32[r]))
					for q := 0; q < tk; q++ {
						sum += rw.f64[r*tk+q] * vn.f64[q*d+j]
						mag += math.Abs(rw.f64[r*tk+q] * vn.f64[q*d+j])
					}
					want[(i*tk+r)*d+j], abs[(i*tk+r)*d+j] = sum, mag
				}
				for q := 0; q < tk; q++ {
					for j := 0; j < d; j++ {
						wantDW[r*tk+q] += rdvm.f64[r*d+j] * vn.f64[q*d+j]
						absDW[r*tk+q] += math.Abs(rdvm.f64[r*d+j] * vn.f64[q*d+j])
					}
				}
			}
		}
		checkRoundedProduct(t, "saved.Mixed", saved.Mixed.f32, want, abs, tk, saved.Mixed.f32)
		checkRoundedProduct(t, "dw", dw.f32, wantDW, absDW, n*d, dw.f32)
	}
}
