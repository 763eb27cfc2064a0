package engine

// sampleTask spreads the simple kernels of this package (element-wise sums,
// channel pooling) over the workers: one struct for all of them, so handing
// work out allocates nothing and needs no closure.
type sampleTask[T Float] struct {
	kind          int
	a, b, c, d, e []T
	idx           []int32
	ch, hw        int
}

const (
	kindAdd = iota
	kindChannelPoolForward
	kindChannelPoolBackward
	kindGlobalMaxForward
	kindGlobalMaxBackward
	kindChannelGateBackward
	kindSpatialGateBackward
)

var sampleTasks = [2]taskPool{
	{New: func() any { return new(sampleTask[float32]) }},
	{New: func() any { return new(sampleTask[float64]) }},
}

func (t *sampleTask[T]) run(_, lo, hi int) {
	switch t.kind {
	case kindAdd:
		addSlices(t.a[lo:hi], t.b[lo:hi], t.c[lo:hi])
	case kindChannelPoolForward: // a: out (N,2,HW), b: x (N,C,HW); lo..hi samples
		s := t.ch * t.hw
		out, am, x := t.a[lo*2*t.hw:hi*2*t.hw], t.idx[lo*t.hw:hi*t.hw], t.b[lo*s:hi*s]
		if !channelPoolForwardC(out, am, x, hi-lo, t.ch, t.hw) {
			channelPoolForward(out, am, x, hi-lo, t.ch, t.hw)
		}
	case kindChannelPoolBackward: // a: dx (N,C,HW), b: dout (N,2,HW)
		s := t.ch * t.hw
		dx, dout, am := t.a[lo*s:hi*s], t.b[lo*2*t.hw:hi*2*t.hw], t.idx[lo*t.hw:hi*t.hw]
		if !channelPoolBackwardC(dx, dout, am, hi-lo, t.ch, t.hw) {
			channelPoolBackward(dx, dout, am, hi-lo, t.ch, t.hw)
		}
	case kindGlobalMaxForward: // a: out (planes), b: x (planes, HW); lo..hi planes
		out, am, x := t.a[lo:hi], t.idx[lo:hi], t.b[lo*t.hw:hi*t.hw]
		if !globalMaxForwardC(out, am, x, t.hw) {
			globalMaxForward(out, am, x, t.hw)
		}
	case kindGlobalMaxBackward: // a: dx (planes, HW), b: dout (planes)
		globalMaxBackward(t.a[lo*t.hw:hi*t.hw], t.b[lo:hi], t.idx[lo:hi], t.hw)
	case kindChannelGateBackward: // a: dx, b: dout (planes, HW); c: scale, d: dAvg, e: dMax (planes)
		dx, dout := t.a[lo*t.hw:hi*t.hw], t.b[lo*t.hw:hi*t.hw]
		if !channelGateBackwardC(dx, dout, t.c[lo:hi], t.d[lo:hi], t.e[lo:hi], t.idx[lo:hi], t.hw) {
			channelGateBackward(dx, dout, t.c[lo:hi], t.d[lo:hi], t.e[lo:hi], t.idx[lo:hi], t.hw)
		}
	case kindSpatialGateBackward: // a: dx, b: dout (N,C,HW); c: att (N,HW), d: dPooled (N,2,HW); lo..hi samples
		s := t.ch * t.hw
		dx, dout, att, dp, am := t.a[lo*s:hi*s], t.b[lo*s:hi*s], t.c[lo*t.hw:hi*t.hw], t.d[lo*2*t.hw:hi*2*t.hw], t.idx[lo*t.hw:hi*t.hw]
		if !spatialGateBackwardC(dx, dout, att, dp, am, hi-lo, t.ch, t.hw) {
			spatialGateBackward(dx, dout, att, dp, am, hi-lo, t.ch, t.hw)
		}
	}
}

// runSamples runs kind over [0, n) on the workers when the work is big
// enough to pay for the hand-off (size elements in all), else inline.
func runSamples[T Float](kind, n, size int, a, b, c []T, idx []int32, ch, hw int) {
	runSampleTask(n, size, sampleTask[T]{kind: kind, a: a, b: b, c: c, idx: idx, ch: ch, hw: hw})
}

func runSampleTask[T Float](n, size int, args sampleTask[T]) {
	if size < parallelMinElems || n < 2 {
		args.run(0, 0, n)
		return
	}
	p := &sampleTasks[dtypeIndex[T]()]
	t := p.Get().(*sampleTask[T])
	*t = args
	parallelFor(n, t)
	*t = sampleTask[T]{}
	p.Put(t)
}
