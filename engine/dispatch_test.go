package engine

import "testing"

// TestCPUDispatchAllocatesNothing runs every op's CPU entry point on small
// tensors of both dtypes (below the size that hands work to the workers) and
// wants no allocation: the picked generic body is a static function value,
// so a call that allocates means an argument escaped through it.
func TestCPUDispatchAllocatesNothing(t *testing.T) {
	for _, dt := range []DType{Float32, Float64} {
		t.Run(dt.String(), func(t *testing.T) {
			for _, c := range dispatchCases(dt) {
				c.op() // warm up: first calls may fill scratch buffers
				if a := testing.AllocsPerRun(20, c.op); a != 0 {
					t.Errorf("%s: %v allocations per call, want 0", c.name, a)
				}
			}
		})
	}
}

type dispatchCase struct {
	name string
	op   func()
}

// filled is a tensor holding small positive values.
func filled(dt DType, shape ...int) *Tensor {
	x := New(dt, shape...)
	for i := range x.Len() {
		mustOK(x.SetAt(i, float64(i%7)/4+0.25))
	}
	return x
}

func dispatchCases(dt DType) []dispatchCase {
	ten := func(shape ...int) *Tensor { return filled(dt, shape...) }
	x, out, dx, dout := ten(2, 3, 4, 4), ten(2, 3, 4, 4), ten(2, 3, 4, 4), ten(2, 3, 4, 4)
	g3, dg3 := ten(3), ten(3)
	pooled, argmax := ten(2, 3, 2, 2), make([]int32, 2*3*2*2)
	planes, planeIdx := ten(2, 3), make([]int32, 2*3)
	chOut, chIdx := ten(2, 2, 4, 4), make([]int32, 2*4*4)
	pixels := ten(2, 1, 4, 4)
	w, b, lin, dlin, dw, db := ten(5, 48), ten(5), ten(2, 5), ten(2, 5), ten(5, 48), ten(5)
	flat, dflat := ten(2, 48), ten(2, 48)
	rows, mean, rstd := ten(6, 8), ten(6), ten(6)
	gamma8, beta8 := ten(8), ten(8)
	labels, dlin2 := []int32{1, 3}, ten(2, 5)
	mask := ten(2, 3, 4, 4)
	rng := &DropoutRNG{Seed: 1}
	p := Pool2DSquare(2, 2, 0)
	bcOut, bcG := ten(2, 3, 4, 4), ten(1, 3, 1, 1)
	z, saved := ten(2, 4, 8), &SpatialGatingSaved{}
	saved.Ensure(dt, 2, 4, 4)
	gw, gb, dz := ten(4, 4), ten(4), ten(2, 4, 8)
	gout, gamma4, beta4 := ten(2, 4, 4), ten(4), ten(4)
	buf, m := ten(5, 48), ten(5, 48)
	gathered, rowIdx := ten(1, 4, 8), []int{1} // slices passed to an op escape (see pick)
	r238, r283, r68 := view(rows, 2, 3, 8), view(ten(6, 8), 2, 8, 3), view(ten(6, 8), 6, 8)
	posVar, posV := ones(ten(3)), ones(ten(5, 48))
	cat := ten(2, 6, 4, 4)
	parts := []*Tensor{x, out}
	return append([]dispatchCase{
		{"ActivationForward", func() { mustOK(ActivationForward(out, x, GELU)) }},
		{"ActivationBackward", func() { mustOK(ActivationBackward(dx, dout, x, out, Tanh)) }},
		{"Add", func() { mustOK(Add(out, x, dout)) }},
		{"AddScaled", func() { mustOK(AddScaled(out, x, 0.5)) }},
		{"BroadcastMultiplyForward", func() { mustOK(BroadcastMultiplyForward(bcOut, x, bcG)) }},
		{"BroadcastMultiplyBackward", func() { mustOK(BroadcastMultiplyBackward(dx, bcG, dout, x, bcG)) }},
		{"ChannelPoolForward", func() { mustOK(ChannelPoolForward(chOut, chIdx, x)) }},
		{"ChannelPoolBackward", func() { mustOK(ChannelPoolBackward(dx, chOut, chIdx)) }},
		{"Transpose12", func() { mustOK(Transpose12(r283, r238)) }},
		{"GlobalMaxPoolForward", func() { mustOK(GlobalMaxPoolForward(planes, planeIdx, x)) }},
		{"GlobalMaxPoolBackward", func() { mustOK(GlobalMaxPoolBackward(dx, planes, planeIdx)) }},
		{"ChannelGateBackward", func() { mustOK(ChannelGateBackward(dx, dout, planes, planes, planes, planeIdx)) }},
		{"SpatialGateBackward", func() { mustOK(SpatialGateBackward(dx, dout, pixels, chOut, chIdx)) }},
		{"ConcatForward", func() { mustOK(ConcatForward(cat, parts)) }},
		{"ConcatBackward", func() { mustOK(ConcatBackward(parts, cat)) }},
		{"DropoutForward", func() { mustOK(DropoutForward(out, mask, x, 0.5, true, rng)) }},
		{"DropoutBackward", func() { mustOK(DropoutBackward(dx, dout, mask)) }},
		{"GatherRows", func() { mustOK(GatherRows(gathered, z, rowIdx)) }},
		{"SpatialGatingForward", func() { mustOK(SpatialGatingForward(gout, saved, z, gamma4, beta4, gw, gb, 1e-5)) }},
		{"SpatialGatingBackward", func() {
			mustOK(SpatialGatingBackward(dz, gamma4, beta4, gw, gb, gout, z, saved, gamma4, gw))
		}},
		{"LinearForward", func() { mustOK(LinearForward(lin, flat, w, b)) }},
		{"LinearBackward", func() { mustOK(LinearBackward(dflat, dw, db, dlin, flat, w)) }},
		{"SoftmaxCrossEntropyForward", func() { _, _, err := SoftmaxCrossEntropyForward(lin, dlin, labels, 0.1); mustOK(err) }},
		{"SoftmaxCrossEntropyBackward", func() { mustOK(SoftmaxCrossEntropyBackward(dlin, lin, labels, 0.1, 1)) }},
		{"MSEForward", func() { _, err := MSEForward(lin, dlin); mustOK(err) }},
		{"MSEBackward", func() { mustOK(MSEBackward(dlin2, lin, dlin, 1)) }},
		{"L1Forward", func() { _, err := L1Forward(lin, dlin); mustOK(err) }},
		{"L1Backward", func() { mustOK(L1Backward(dlin2, lin, dlin, 1)) }},
		{"BatchNorm2DForward", func() { mustOK(BatchNorm2DForward(out, g3, dg3, x, g3, g3, nil, nil, 0.1, 1e-5)) }},
		{"BatchNorm2DEvalForward", func() { mustOK(BatchNorm2DEvalForward(out, x, g3, g3, g3, posVar, 1e-5)) }},
		{"BatchNorm2DBackward", func() { mustOK(BatchNorm2DBackward(dx, dg3, dg3, dout, x, g3, posVar, g3)) }},
		{"BatchNorm2DEvalBackward", func() {
			mustOK(BatchNorm2DEvalBackward(dx, dg3, dg3, dout, x, g3, g3, posVar, 1e-5))
		}},
		{"LayerNormForward", func() { mustOK(LayerNormForward(rows, mean, rstd, r68, gamma8, beta8, 1e-5)) }},
		{"LayerNormBackward", func() { mustOK(LayerNormBackward(rows, gamma8, beta8, rows, rows, mean, rstd, gamma8)) }},
		{"SGDStep", func() { mustOK(SGDStep(w, dw, buf, SGDConfig{LR: 0.1, Momentum: 0.9})) }},
		{"AdamWStep", func() {
			mustOK(AdamWStep(w, dw, m, posV, AdamWConfig{LR: 0.1, Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, Step: 1}))
		}},
		{"MaxPool2DForward", func() { mustOK(MaxPool2DForward(pooled, argmax, x, p)) }},
		{"MaxPool2DBackward", func() { mustOK(MaxPool2DBackward(dx, pooled, argmax, p)) }},
		{"AvgPool2DForward", func() { mustOK(AvgPool2DForward(pooled, x, p)) }},
		{"AvgPool2DBackward", func() { mustOK(AvgPool2DBackward(dx, pooled, p)) }},
		{"GlobalAvgPoolForward", func() { mustOK(GlobalAvgPoolForward(planes, x)) }},
		{"GlobalAvgPoolBackward", func() { mustOK(GlobalAvgPoolBackward(dx, planes)) }},
	}, convDispatchCases(dt)...)
}

// convDispatchCases are the convolution's: 3×3 padded (the C path in
// float32, col in float64), strided (col), 1×1 (pointwise).
func convDispatchCases(dt DType) []dispatchCase {
	ten := func(shape ...int) *Tensor { return filled(dt, shape...) }
	x, dx := ten(2, 3, 4, 4), ten(2, 3, 4, 4)
	w, b, dw, db := ten(4, 3, 3, 3), ten(4), ten(4, 3, 3, 3), ten(4)
	out, dout := ten(2, 4, 4, 4), ten(2, 4, 4, 4)
	same, strided := Conv2DSquare(1, 1, 1, 1), Conv2DSquare(2, 1, 1, 1)
	sOut, sDout := ten(2, 4, 2, 2), ten(2, 4, 2, 2)
	pw, pdw := ten(4, 3, 1, 1), ten(4, 3, 1, 1)
	return []dispatchCase{
		{"Conv2DForward", func() { mustOK(Conv2DForward(out, x, w, b, same)) }},
		{"Conv2DBackward", func() { mustOK(Conv2DBackward(dx, dw, db, dout, x, w, same)) }},
		{"Conv2DForward/strided", func() { mustOK(Conv2DForward(sOut, x, w, b, strided)) }},
		{"Conv2DBackward/strided", func() { mustOK(Conv2DBackward(dx, dw, db, sDout, x, w, strided)) }},
		{"Conv2DForward/pointwise", func() { mustOK(Conv2DForward(out, x, pw, b, Conv2DParams{})) }},
		{"Conv2DBackward/pointwise", func() { mustOK(Conv2DBackward(dx, pdw, db, dout, x, pw, Conv2DParams{})) }},
	}
}

func mustOK(err error) {
	if err != nil {
		panic(err)
	}
}

// view is t with another shape of the same size, sharing its data.
func view(t *Tensor, shape ...int) *Tensor {
	r, err := t.Reshape(shape...)
	mustOK(err)
	return r
}

// ones is t filled with 1 (variances and second moments must be positive).
func ones(t *Tensor) *Tensor {
	mustOK(t.Fill(1))
	return t
}

// BenchmarkCPUDispatch times each entry point on the small tensors above,
// where the checks and the dispatch weigh most against the arithmetic.
func BenchmarkCPUDispatch(b *testing.B) {
	for _, dt := range []DType{Float32, Float64} {
		for _, c := range dispatchCases(dt) {
			b.Run(dt.String()+"/"+c.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					c.op()
				}
			})
		}
	}
}
