package engine_test

import (
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// LeNet-5's layers at batch 64 in float32, the main CPU training target.
// Images/s is reported so the numbers compare directly with a training step.

type convBench struct {
	x, w, b, out, dx, dw, db *engine.Tensor
	p                        engine.Conv2DParams
}

func newConvBench(n, cin, h, w, cout, k int, p engine.Conv2DParams, wantDx bool) *convBench {
	rng := rand.New(rand.NewPCG(20, 20))
	os, err := engine.Conv2DOutputShape([]int{n, cin, h, w}, []int{cout, cin / max(p.Groups, 1), k, k}, p)
	if err != nil {
		panic(err)
	}
	c := &convBench{
		x: randTensor(rng, engine.Float32, n, cin, h, w), w: randTensor(rng, engine.Float32, cout, cin/max(p.Groups, 1), k, k),
		b: randTensor(rng, engine.Float32, cout), out: randTensor(rng, engine.Float32, os...),
		p: p,
	}
	c.dw, c.db = engine.New(engine.Float32, c.w.Shape()...), engine.New(engine.Float32, cout)
	if wantDx {
		c.dx = engine.New(engine.Float32, c.x.Shape()...)
	}
	return c
}

func (c *convBench) run(b *testing.B, forward, backward bool) {
	engine.BenchThreads()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if forward {
			if err := engine.Conv2DForward(c.out, c.x, c.w, c.b, c.p); err != nil {
				b.Fatal(err)
			}
		}
		if backward {
			// out stands in for dout: same shape, and its values do not matter.
			if err := engine.Conv2DBackward(c.dx, c.dw, c.db, c.out, c.x, c.w, c.p); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)*float64(c.x.Dim(0))/b.Elapsed().Seconds(), "img/s")
}

func lenetConv1() *convBench {
	return newConvBench(64, 1, 28, 28, 6, 5, engine.Conv2DSquare(1, 2, 1, 1), false)
}

func lenetConv2() *convBench {
	return newConvBench(64, 6, 14, 14, 16, 5, engine.Conv2DParams{}, true)
}

func BenchmarkConv2DLeNet1Forward(b *testing.B)  { lenetConv1().run(b, true, false) }
func BenchmarkConv2DLeNet1Backward(b *testing.B) { lenetConv1().run(b, false, true) }
func BenchmarkConv2DLeNet2Forward(b *testing.B)  { lenetConv2().run(b, true, false) }
func BenchmarkConv2DLeNet2Backward(b *testing.B) { lenetConv2().run(b, false, true) }

// Both LeNet convolutions, forward and backward: the convolution share of a
// training step.
func BenchmarkConv2DLeNetStep(b *testing.B) {
	c1, c2 := lenetConv1(), lenetConv2()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, c := range []*convBench{c1, c2} {
			if err := engine.Conv2DForward(c.out, c.x, c.w, c.b, c.p); err != nil {
				b.Fatal(err)
			}
		}
		for _, c := range []*convBench{c2, c1} {
			if err := engine.Conv2DBackward(c.dx, c.dw, c.db, c.out, c.x, c.w, c.p); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.N)*64/b.Elapsed().Seconds(), "img/s")
}

// LeNet's max pools at batch 64, forward then backward: after conv1
// (6×28×28) and after conv2 (16×10×10, rows of five outputs).
func BenchmarkMaxPool2DLeNet(b *testing.B)  { benchMaxPool2x2(b, 64, 6, 28, 28) }
func BenchmarkMaxPool2DLeNet2(b *testing.B) { benchMaxPool2x2(b, 64, 16, 10, 10) }

func benchMaxPool2x2(b *testing.B, n, c, h, w int) {
	rng := rand.New(rand.NewPCG(21, 21))
	x := randTensor(rng, engine.Float32, n, c, h, w)
	out, dx := engine.New(engine.Float32, n, c, h/2, w/2), engine.New(engine.Float32, n, c, h, w)
	argmax := make([]int32, out.Len())
	p := engine.Pool2DSquare(2, 0, 0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = engine.MaxPool2DForward(out, argmax, x, p)
		_ = engine.MaxPool2DBackward(dx, out, argmax, p)
	}
	b.ReportMetric(float64(b.N)*float64(n)/b.Elapsed().Seconds(), "img/s")
}

// The suite's avg pool 3×3 s1 (bench/ops.go), forward then backward.
func BenchmarkAvgPool2D3x3(b *testing.B) {
	rng := rand.New(rand.NewPCG(22, 22))
	x := randTensor(rng, engine.Float32, 32, 64, 32, 32)
	out, dx := engine.New(engine.Float32, 32, 64, 32, 32), engine.New(engine.Float32, 32, 64, 32, 32)
	p := engine.Pool2DSquare(3, 1, 1)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = engine.AvgPool2DForward(out, x, p)
		_ = engine.AvgPool2DBackward(dx, out, p)
	}
	b.ReportMetric(float64(b.N)*32/b.Elapsed().Seconds(), "img/s")
}

// The suite's pointwise layer (bench/ops.go conv_1x1): 32×64×16×16, 64→128.
func conv1x1() *convBench {
	return newConvBench(32, 64, 16, 16, 128, 1, engine.Conv2DParams{}, true)
}

func BenchmarkConv2D1x1Forward(b *testing.B)  { conv1x1().run(b, true, false) }
func BenchmarkConv2D1x1Backward(b *testing.B) { conv1x1().run(b, false, true) }

// The suite's strided layer (conv_3x3_s2): 32×64×32×32, 64→128, 3×3 stride 2 pad 1.
func conv3x3s2() *convBench {
	return newConvBench(32, 64, 32, 32, 128, 3, engine.Conv2DSquare(2, 1, 1, 1), true)
}

func BenchmarkConv2D3x3Stride2Forward(b *testing.B)  { conv3x3s2().run(b, true, false) }
func BenchmarkConv2D3x3Stride2Backward(b *testing.B) { conv3x3s2().run(b, false, true) }

// The zoo's convolutions (layers/zoo.go: lenet on 1×28×28, cnn, inception and
// cbam on 3×32×32) at batch 8, forward then backward, float32: the shapes
// bench/results/*-conv-lowerings.md measured each lowering on. A first
// layer computes no dx.
func BenchmarkConv2DZoo(b *testing.B) {
	for _, s := range []struct {
		name                    string
		cin, h, cout, k, stride int
		pad                     int
		dx                      bool
	}{
		{"lenet1", 1, 28, 6, 5, 1, 2, false}, {"lenet2", 6, 14, 16, 5, 1, 0, true},
		{"cnn1", 3, 32, 32, 3, 1, 1, false}, {"cnn2", 32, 32, 32, 3, 1, 1, true}, {"cnn4", 64, 16, 64, 3, 1, 1, true},
		{"inception-3x3", 24, 16, 48, 3, 1, 1, true}, {"inception-5x5", 8, 16, 16, 5, 1, 2, true},
		{"inception-1x1", 56, 16, 32, 1, 1, 0, true}, {"cbam-spatial", 2, 32, 1, 7, 1, 3, true},
		{"gmlp-patch", 3, 32, 128, 4, 4, 0, false},
	} {
		c := newConvBench(8, s.cin, s.h, s.h, s.cout, s.k, engine.Conv2DSquare(s.stride, s.pad, 1, 1), s.dx)
		b.Run(s.name, func(b *testing.B) { c.run(b, true, true) })
	}
}

// cnn's convolutions (layers/zoo.go on 3×32×32) at the suite's batch 128,
// each pass alone, in GFLOP/s (a multiply-add counts 2): the figure to hold
// against the machine's FMA peak (bench/peak.c); also at 28×28×1, batch 64,
// the comparison's other shape.
func BenchmarkConv2DCNNPasses(b *testing.B) { benchCNNPasses(b, engine.FP32) }

// BenchmarkConv2DCNNPassesBF16 is BenchmarkConv2DCNNPasses in bf16 (AMX's
// tiles, or AVX512_BF16's with KILN_CPU_AMX=off): the figure to hold
// against fp32's in the same run.
func BenchmarkConv2DCNNPassesBF16(b *testing.B) {
	if !engine.CPUHasBF16() {
		b.Skip("skipped: this CPU has no AVX512_BF16")
	}
	benchCNNPasses(b, engine.BF16)
}

func benchCNNPasses(b *testing.B, prec engine.Precision) {
	for _, s := range []struct {
		name            string
		n, cin, h, cout int
		dx              bool
	}{
		{"cnn1", 128, 3, 32, 32, false}, {"cnn2", 128, 32, 32, 32, true}, {"cnn3", 128, 32, 16, 64, true}, {"cnn4", 128, 64, 16, 64, true},
		{"cnn1-28", 64, 1, 28, 32, false}, {"cnn2-28", 64, 32, 28, 32, true}, {"cnn3-28", 64, 32, 14, 64, true}, {"cnn4-28", 64, 64, 14, 64, true},
	} {
		c := newConvBench(s.n, s.cin, s.h, s.h, s.cout, 3, engine.Conv2DSquare(1, 1, 1, 1), s.dx)
		c.w.SetPrecision(prec)
		flop := 2 * float64(s.n*s.cout*s.h*s.h*s.cin*9)
		b.Run(s.name+"/forward", func(b *testing.B) { c.run(b, true, false); reportGFLOPs(b, flop) })
		passes := 1.0 // dw (db is a sum)
		if s.dx {
			passes = 2
		}
		b.Run(s.name+"/backward", func(b *testing.B) { c.run(b, false, true); reportGFLOPs(b, passes*flop) })
	}
}

func reportGFLOPs(b *testing.B, flop float64) {
	b.ReportMetric(float64(b.N)*flop/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// LeNet's convolutions (layers/zoo.go) at the comparison's two shapes, each
// pass alone, in GFLOP/s: conv1 3→6 (padded) and conv2 6→16 on 3×32×32 at
// batch 128, and 1→6, 6→16 on 1×28×28 at batch 64. Their channels are too
// few to fill a register tile, so these sit well under the FMA peak.
func BenchmarkConv2DLeNetPasses(b *testing.B) {
	for _, s := range []struct {
		name                     string
		n, cin, h, cout, pad, oh int
		dx                       bool
	}{
		{"conv1-32", 128, 3, 32, 6, 2, 32, false}, {"conv2-32", 128, 6, 16, 16, 0, 12, true},
		{"conv1-28", 64, 1, 28, 6, 2, 28, false}, {"conv2-28", 64, 6, 14, 16, 0, 10, true},
	} {
		c := newConvBench(s.n, s.cin, s.h, s.h, s.cout, 5, engine.Conv2DSquare(1, s.pad, 1, 1), s.dx)
		flop := 2 * float64(s.n*s.cout*s.oh*s.oh*s.cin*25)
		b.Run(s.name+"/forward", func(b *testing.B) { c.run(b, true, false); reportGFLOPs(b, flop) })
		passes := 1.0
		if s.dx {
			passes = 2
		}
		b.Run(s.name+"/backward", func(b *testing.B) { c.run(b, false, true); reportGFLOPs(b, passes*flop) })
	}
}

// ResNet-18's convolutions (bench/ops.go resnet18Convs) at batch 32 on
// 224×224, each pass alone, in GFLOP/s, without bias as there: the op
// table's rows that run far from the peak on the CPU (the strided layers and
// the small planes of the last stages).
func BenchmarkConv2DResNet18Passes(b *testing.B) {
	for _, s := range []struct {
		name                     string
		cin, h, cout, k, st, pad int
	}{
		{"stem", 3, 224, 64, 7, 2, 3}, {"l1", 64, 56, 64, 3, 1, 1},
		{"l2-down", 64, 56, 128, 3, 2, 1}, {"l2", 128, 28, 128, 3, 1, 1}, {"l2-short", 64, 56, 128, 1, 2, 0},
		{"l3-down", 128, 28, 256, 3, 2, 1}, {"l3", 256, 14, 256, 3, 1, 1}, {"l3-short", 128, 28, 256, 1, 2, 0},
		{"l4-down", 256, 14, 512, 3, 2, 1}, {"l4", 512, 7, 512, 3, 1, 1}, {"l4-short", 256, 14, 512, 1, 2, 0},
	} {
		dx := s.name != "stem"
		c := newConvBench(32, s.cin, s.h, s.h, s.cout, s.k, engine.Conv2DSquare(s.st, s.pad, 1, 1), dx)
		c.b, c.db = nil, nil
		oh := (s.h+2*s.pad-s.k)/s.st + 1
		flop := 2 * float64(32*s.cout*oh*oh*s.cin*s.k*s.k)
		b.Run(s.name+"/forward", func(b *testing.B) { c.run(b, true, false); reportGFLOPs(b, flop) })
		passes := 1.0
		if dx {
			passes = 2
		}
		b.Run(s.name+"/backward", func(b *testing.B) { c.run(b, false, true); reportGFLOPs(b, passes*flop) })
	}
}
