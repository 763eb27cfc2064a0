package bench

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/kiln-ml/kiln/engine"
)

// opSpec is one op-level measurement: an op, a pass and its shapes. The same
// JSON goes to the PyTorch worker (bench/torch/suite.py, build_op), so both
// sides build the same problem. Fields a kind does not use stay zero.
type opSpec struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Kind string `json:"kind"` // conv, maxpool, avgpool, sgu, gemm, batchnorm, layernorm
	Pass string `json:"pass"` // forward or backward

	// conv: x (N,Cin,H,W), weight (Cout,Cin,K,K); gemm: (M×K)·(N×K)ᵀ.
	N      int  `json:"n,omitempty"`
	Cin    int  `json:"cin,omitempty"`
	H      int  `json:"h,omitempty"`
	W      int  `json:"w,omitempty"`
	Cout   int  `json:"cout,omitempty"`
	K      int  `json:"k,omitempty"`
	Stride int  `json:"stride,omitempty"`
	Pad    int  `json:"pad,omitempty"`
	DX     bool `json:"dx"`   // conv backward computes the input gradient
	Bias   bool `json:"bias"` // conv has a bias
	M      int  `json:"m,omitempty"`
	// pooling, batch norm: x's shape (N,C,H,W).
	Shape []int `json:"shape,omitempty"`
	// sgu: z (N,T,2D); layernorm: x (Rows, Dim).
	T    int `json:"t,omitempty"`
	D    int `json:"d,omitempty"`
	Rows int `json:"rows,omitempty"`
	Dim  int `json:"dim,omitempty"`
}

// Unit says whether the op is reported in GFLOP/s (compute-bound) or GB/s
// (memory-bound).
func (o opSpec) Unit() string {
	switch o.Kind {
	case "conv", "gemm", "sgu":
		return "GFLOP/s"
	}
	return "GB/s"
}

// Work is the op's useful floating-point operations (GFLOP/s ops) or the
// bytes it must move at least (GB/s ops) per call.
func (o opSpec) Work() float64 {
	f := func(v ...int) float64 {
		p := 1.0
		for _, x := range v {
			p *= float64(x)
		}
		return p
	}
	switch o.Kind {
	case "conv":
		oh, ow := o.outHW()
		fwd := 2 * f(o.N, o.Cout, oh, ow, o.Cin, o.K, o.K)
		if o.Pass == "forward" {
			return fwd
		}
		if o.DX {
			return 2 * fwd // input and weight gradients
		}
		return fwd
	case "gemm":
		return 2 * f(o.M, o.N, o.K)
	case "sgu":
		// The token-mixing products dominate: W·vn forward; dW and Wᵀ·dvm back.
		fwd := 2 * f(o.N, o.T, o.T, o.D)
		if o.Pass == "forward" {
			return fwd
		}
		return 2 * fwd
	case "maxpool", "avgpool":
		in := 4 * f(o.Shape...)
		oh, ow := o.poolHW()
		out := 4 * f(o.Shape[0], o.Shape[1], oh, ow)
		return in + out // forward reads x, writes out; backward reads dout, writes dx
	case "batchnorm":
		x := 4 * f(o.Shape...)
		if o.Pass == "forward" {
			return 2 * x // read x, write out
		}
		return 3 * x // read dout and x, write dx
	case "layernorm":
		x := 4 * f(o.Rows, o.Dim)
		if o.Pass == "forward" {
			return 2 * x
		}
		return 3 * x
	}
	return 0
}

func (o opSpec) outHW() (int, int) {
	s := max(o.Stride, 1)
	return (o.H+2*o.Pad-o.K)/s + 1, (o.W+2*o.Pad-o.K)/s + 1
}

func (o opSpec) poolHW() (int, int) {
	s := o.Stride
	if s == 0 {
		s = o.K
	}
	return (o.Shape[2]+2*o.Pad-o.K)/s + 1, (o.Shape[3]+2*o.Pad-o.K)/s + 1
}

// ShapeText describes the problem for the report.
func (o opSpec) ShapeText() string {
	switch o.Kind {
	case "conv":
		s := fmt.Sprintf("x %d×%d×%d×%d, %d→%d %d×%d", o.N, o.Cin, o.H, o.W, o.Cin, o.Cout, o.K, o.K)
		if o.Stride > 1 {
			s += fmt.Sprintf(" stride %d", o.Stride)
		}
		if o.Pad > 0 {
			s += fmt.Sprintf(" pad %d", o.Pad)
		}
		if o.Pass == "backward" && !o.DX {
			s += ", no input grad"
		}
		return s
	case "gemm":
		return fmt.Sprintf("%d×%d·(%d×%d)ᵀ", o.M, o.K, o.N, o.K)
	case "sgu":
		return fmt.Sprintf("z %d×%d×%d (T=%d, D=%d)", o.N, o.T, 2*o.D, o.T, o.D)
	case "maxpool", "avgpool":
		s := fmt.Sprintf("x %d×%d×%d×%d, %d×%d", o.Shape[0], o.Shape[1], o.Shape[2], o.Shape[3], o.K, o.K)
		if o.Stride != 0 && o.Stride != o.K {
			s += fmt.Sprintf(" stride %d", o.Stride)
		}
		if o.Pad > 0 {
			s += fmt.Sprintf(" pad %d", o.Pad)
		}
		return s
	case "batchnorm":
		return fmt.Sprintf("x %d×%d×%d×%d, training", o.Shape[0], o.Shape[1], o.Shape[2], o.Shape[3])
	case "layernorm":
		return fmt.Sprintf("x %d×%d", o.Rows, o.Dim)
	}
	return ""
}

// convOp is one convolution of the op table: n images of cin×h×h.
type convOp struct {
	id, name                    string
	n, cin, h, cout, k, st, pad int
	dx, noBias                  bool
}

// resnet18Convs is the set of distinct convolutions of ResNet-18 at 224×224
// (the stem, each stage's 3×3 layers and its 1×1 stride-2 shortcut), n
// images a batch, without bias (batch norm follows each of them, as in
// torchvision). Quick mode keeps the two shapes no other row has, the stem
// and a 1×1 stride-2 shortcut, on images an eighth a side (the emulator
// runs the quick list; its 3×3 layers at 7×7 and 512 channels took minutes).
func resnet18Convs(n int, quick bool) []convOp {
	side := func(h int) int {
		if quick {
			return h / 8
		}
		return h
	}
	c := func(id, name string, cin, h, cout, k, st, pad int) convOp {
		return convOp{"resnet18_" + id, "ResNet-18 " + name, n, cin, side(h), cout, k, st, pad, id != "stem", true}
	}
	if quick {
		return []convOp{c("stem", "stem 7×7 s2", 3, 224, 64, 7, 2, 3), c("l2_short", "layer2 1×1 s2 shortcut", 64, 56, 128, 1, 2, 0)}
	}
	return []convOp{
		c("stem", "stem 7×7 s2", 3, 224, 64, 7, 2, 3),
		c("l1", "layer1 3×3 64", 64, 56, 64, 3, 1, 1),
		c("l2_down", "layer2 3×3 s2 64→128", 64, 56, 128, 3, 2, 1),
		c("l2", "layer2 3×3 128", 128, 28, 128, 3, 1, 1),
		c("l2_short", "layer2 1×1 s2 shortcut", 64, 56, 128, 1, 2, 0),
		c("l3_down", "layer3 3×3 s2 128→256", 128, 28, 256, 3, 2, 1),
		c("l3", "layer3 3×3 256", 256, 14, 256, 3, 1, 1),
		c("l3_short", "layer3 1×1 s2 shortcut", 128, 28, 256, 1, 2, 0),
		c("l4_down", "layer4 3×3 s2 256→512", 256, 14, 512, 3, 2, 1),
		c("l4", "layer4 3×3 512", 512, 7, 512, 3, 1, 1),
		c("l4_short", "layer4 1×1 s2 shortcut", 256, 14, 512, 1, 2, 0),
	}
}

// opList is the op-level section's problems. Quick mode keeps every kind of
// op but shrinks batches (and ResNet-18's images) and keeps only the smallest
// GEMM. The GPU's list goes on to GEMM 4096, which takes 0.7 s a call on two
// CPU cores.
func opList(quick, gpu bool) []opSpec {
	b := func(n int) int {
		if quick {
			return max(n/16, 1)
		}
		return n
	}
	convs := []convOp{
		{"conv_lenet1", "conv LeNet 1", b(64), 1, 28, 6, 5, 1, 2, false, false},
		{"conv_lenet2", "conv LeNet 2", b(64), 6, 14, 16, 5, 1, 0, true, false},
		{"conv_3x3", "conv 3×3 64→64", b(32), 64, 32, 64, 3, 1, 1, true, false},
		{"conv_1x1", "conv 1×1 64→128", b(32), 64, 16, 128, 1, 1, 0, true, false},
		{"conv_3x3_s2", "conv 3×3 stride 2", b(32), 64, 32, 128, 3, 2, 1, true, false},
	}
	convs = append(convs, resnet18Convs(b(32), quick)...)
	var ops []opSpec
	both := func(o opSpec) {
		f, bw := o, o
		f.Pass, bw.Pass = "forward", "backward"
		f.ID, bw.ID = o.ID+"_fwd", o.ID+"_bwd"
		ops = append(ops, f, bw)
	}
	for _, c := range convs {
		both(opSpec{ID: c.id, Name: c.name, Kind: "conv", N: c.n, Cin: c.cin, H: c.h, W: c.h, Cout: c.cout,
			K: c.k, Stride: c.st, Pad: c.pad, DX: c.dx, Bias: !c.noBias})
	}
	both(opSpec{ID: "maxpool_2x2", Name: "max pool 2×2", Kind: "maxpool", Shape: []int{b(32), 64, 32, 32}, K: 2})
	both(opSpec{ID: "avgpool_3x3", Name: "avg pool 3×3 s1", Kind: "avgpool", Shape: []int{b(32), 64, 32, 32}, K: 3, Stride: 1, Pad: 1})
	both(opSpec{ID: "sgu", Name: "SGU gating", Kind: "sgu", N: b(128), T: 64, D: 128})
	both(opSpec{ID: "batchnorm", Name: "batch norm", Kind: "batchnorm", Shape: []int{b(32), 64, 32, 32}})
	both(opSpec{ID: "layernorm", Name: "layer norm", Kind: "layernorm", Rows: b(128) * 64, Dim: 128})
	sizes := []int{256, 512, 1024, 2048}
	if gpu {
		sizes = append(sizes, 4096)
	}
	if quick {
		sizes = []int{128}
	}
	for _, s := range sizes {
		ops = append(ops, opSpec{ID: fmt.Sprintf("gemm_%d", s), Name: fmt.Sprintf("GEMM %d", s), Kind: "gemm",
			Pass: "forward", M: s, N: s, K: s})
	}
	return ops
}

// kilnOp builds op on Kiln's engine on device dev (its tensors made there)
// and returns one call of it, and release, which frees the op's device
// memory once it is timed. On the GPU a call only queues the kernels: time
// it with timeCalls and cuda.Synchronize.
func kilnOp(o opSpec, dev engine.Device) (fn func() error, release func(), err error) {
	var own opMemory
	fn, err = buildKilnOp(o, dev, &own)
	if err != nil {
		own.release()
		return nil, nil, err
	}
	return fn, own.release, nil
}

// opMemory is the device memory of one op's tensors, argmax and saved
// activations.
type opMemory struct {
	tensors []*engine.Tensor
	argmax  [][]int32
	saved   []*engine.SpatialGatingSaved
}

func (m *opMemory) release() {
	for _, t := range m.tensors {
		t.Release()
	}
	for _, a := range m.argmax {
		engine.ReleaseArgmax(a)
	}
	for _, s := range m.saved {
		engine.Drop(&s.Norm, &s.Mixed, &s.Mean, &s.RStd)
	}
	*m = opMemory{}
}

// opBuilder makes one op's tensors on its device, owned by own. The first
// failure to place one (out of memory, say) is kept in err and is the op's
// error, whatever the builders go on to return.
type opBuilder struct {
	rng *rand.Rand
	dev engine.Device
	own *opMemory
	err error
}

// place moves t to the builder's device.
func (b *opBuilder) place(t *engine.Tensor) *engine.Tensor {
	if b.dev == engine.CPU || b.err != nil {
		return t
	}
	d, err := t.To(b.dev)
	if err != nil {
		b.err = err
		return t
	}
	b.own.tensors = append(b.own.tensors, d)
	return d
}

// randHost is a host tensor of standard normal values.
func (b *opBuilder) randHost(shape ...int) *engine.Tensor {
	t := engine.New(engine.Float32, shape...)
	for i := range t.Float32() {
		t.Float32()[i] = float32(b.rng.NormFloat64())
	}
	return t
}

func (b *opBuilder) rnd(shape ...int) *engine.Tensor { return b.place(b.randHost(shape...)) }
func (b *opBuilder) zero(shape ...int) *engine.Tensor {
	return b.place(engine.New(engine.Float32, shape...))
}

func buildKilnOp(o opSpec, dev engine.Device, own *opMemory) (fn func() error, err error) {
	b := &opBuilder{rng: rand.New(rand.NewPCG(1, 1)), dev: dev, own: own}
	build := map[string]func(opSpec) (func() error, error){
		"gemm": b.gemm, "conv": b.conv, "maxpool": b.pool, "avgpool": b.pool,
		"sgu": b.sgu, "batchnorm": b.batchNorm, "layernorm": b.layerNorm,
	}[o.Kind]
	if build == nil {
		return nil, fmt.Errorf("unknown op kind %q", o.Kind)
	}
	fn, err = build(o)
	if b.err != nil {
		return nil, b.err
	}
	return fn, err
}

func (b *opBuilder) gemm(o opSpec) (func() error, error) {
	x, w, out := b.rnd(o.M, o.K), b.rnd(o.N, o.K), b.zero(o.M, o.N)
	return func() error { return engine.LinearForward(out, x, w, nil) }, nil
}

func (b *opBuilder) conv(o opSpec) (func() error, error) {
	p := engine.Conv2DSquare(max(o.Stride, 1), o.Pad, 1, 1)
	x, w := b.rnd(o.N, o.Cin, o.H, o.W), b.rnd(o.Cout, o.Cin, o.K, o.K)
	var bias *engine.Tensor
	if o.Bias {
		bias = b.rnd(o.Cout)
	}
	shape, err := engine.Conv2DOutputShape(x.Shape(), w.Shape(), p)
	if err != nil {
		return nil, err
	}
	out := b.zero(shape...)
	if o.Pass == "forward" {
		return func() error { return engine.Conv2DForward(out, x, w, bias, p) }, nil
	}
	dout, dw := b.rnd(shape...), b.zero(w.Shape()...)
	var dx, db *engine.Tensor
	if o.DX {
		dx = b.zero(x.Shape()...)
	}
	if o.Bias {
		db = b.zero(o.Cout)
	}
	return func() error { return engine.Conv2DBackward(dx, dw, db, dout, x, w, p) }, nil
}

func (b *opBuilder) pool(o opSpec) (func() error, error) {
	p := engine.Pool2DSquare(o.K, o.Stride, o.Pad)
	x := b.rnd(o.Shape...)
	shape, err := engine.Pool2DOutputShape(x.Shape(), p)
	if err != nil {
		return nil, err
	}
	out, dx, dout := b.zero(shape...), b.zero(x.Shape()...), b.rnd(shape...)
	fwd := o.Pass == "forward"
	if o.Kind == "avgpool" {
		if fwd {
			return func() error { return engine.AvgPool2DForward(out, x, p) }, nil
		}
		return func() error { return engine.AvgPool2DBackward(dx, dout, p) }, nil
	}
	argmax := make([]int32, out.Len())
	b.own.argmax = append(b.own.argmax, argmax)
	if err := engine.MaxPool2DForward(out, argmax, x, p); err != nil {
		return nil, err
	}
	if fwd {
		return func() error { return engine.MaxPool2DForward(out, argmax, x, p) }, nil
	}
	return func() error { return engine.MaxPool2DBackward(dx, dout, argmax, p) }, nil
}

func (b *opBuilder) sgu(o opSpec) (func() error, error) {
	z, gamma, beta := b.rnd(o.N, o.T, 2*o.D), b.rnd(o.D), b.rnd(o.D)
	wh := b.randHost(o.T, o.T)
	if err := engine.Scale(wh, 1e-3); err != nil {
		return nil, err
	}
	w, bias := b.place(wh), b.rnd(o.T)
	out := b.zero(o.N, o.T, o.D)
	if b.err != nil {
		return nil, b.err
	}
	saved := &engine.SpatialGatingSaved{}
	b.own.saved = append(b.own.saved, saved)
	if err := saved.EnsureOn(z, o.N, o.T, o.D); err != nil {
		return nil, err
	}
	fwd := func() error {
		return engine.SpatialGatingForward(out, saved, z, gamma, beta, w, bias, engine.DefaultNormEps)
	}
	if err := fwd(); err != nil {
		return nil, err
	}
	if o.Pass == "forward" {
		return fwd, nil
	}
	dz, dgamma, dbeta := b.zero(z.Shape()...), b.zero(o.D), b.zero(o.D)
	dw, db, dout := b.zero(o.T, o.T), b.zero(o.T), b.rnd(o.N, o.T, o.D)
	return func() error {
		return engine.SpatialGatingBackward(dz, dgamma, dbeta, dw, db, dout, z, saved, gamma, w)
	}, nil
}

func (b *opBuilder) batchNorm(o opSpec) (func() error, error) {
	c := o.Shape[1]
	x, gamma, beta := b.rnd(o.Shape...), b.rnd(c), b.rnd(c)
	runMean, runVar := b.zero(c), b.zero(c)
	mean, invStd, out := b.zero(c), b.zero(c), b.zero(o.Shape...)
	bn := func() error {
		return engine.BatchNorm2DForward(out, mean, invStd, x, gamma, beta, runMean, runVar,
			engine.DefaultBatchNormMomentum, engine.DefaultNormEps)
	}
	if err := bn(); err != nil {
		return nil, err
	}
	if o.Pass == "forward" {
		return bn, nil
	}
	dx, dgamma, dbeta, dout := b.zero(o.Shape...), b.zero(c), b.zero(c), b.rnd(o.Shape...)
	return func() error { return engine.BatchNorm2DBackward(dx, dgamma, dbeta, dout, x, mean, invStd, gamma) }, nil
}

func (b *opBuilder) layerNorm(o opSpec) (func() error, error) {
	x, gamma, beta := b.rnd(o.Rows, o.Dim), b.rnd(o.Dim), b.rnd(o.Dim)
	mean, rstd, out := b.zero(o.Rows), b.zero(o.Rows), b.zero(o.Rows, o.Dim)
	ln := func() error { return engine.LayerNormForward(out, mean, rstd, x, gamma, beta, engine.DefaultNormEps) }
	if err := ln(); err != nil {
		return nil, err
	}
	if o.Pass == "forward" {
		return ln, nil
	}
	dx, dgamma, dbeta, dout := b.zero(o.Rows, o.Dim), b.zero(o.Dim), b.zero(o.Dim), b.rnd(o.Rows, o.Dim)
	return func() error { return engine.LayerNormBackward(dx, dgamma, dbeta, dout, x, mean, rstd, gamma) }, nil
}

// timeCalls runs fn warm times untimed, then times at least minCalls calls
// and at least dur, and returns the mean seconds per call. sync, when not
// nil, waits for queued GPU work: before the clock starts and before it stops.
func timeCalls(fn, sync func() error, dur time.Duration, minCalls, warm int) (float64, error) {
	if sync == nil {
		sync = func() error { return nil }
	}
	for range warm {
		if err := fn(); err != nil {
			return 0, err
		}
	}
	if err := sync(); err != nil {
		return 0, err
	}
	n, start := 0, time.Now()
	for n < minCalls || time.Since(start) < dur {
		if err := fn(); err != nil {
			return 0, err
		}
		n++
	}
	if err := sync(); err != nil {
		return 0, err
	}
	return time.Since(start).Seconds() / float64(n), nil
}
