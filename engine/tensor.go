package engine

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"unsafe"

	"github.com/kiln-ml/kiln/cuda"

	"gorgonia.org/tensor"
)

// Tensor is a dense, row-major array of Float32 or Float64 on one device.
// A Tensor made by Reshape shares its data with the original.
type Tensor struct {
	shape  []int
	dtype  DType
	device Device
	f32    []float32
	f64    []float64
	mem    *devMem   // CUDA data (devmem.go)
	off    int       // first element of a CUDA view within mem
	err    error     // why this tensor could not be made (EnsureLike); ops return it
	prec   Precision // of the products this tensor is a weight in (precision.go)
}

// New returns a zeroed CPU tensor.
func New(dt DType, shape ...int) *Tensor {
	n := numel(shape)
	t := &Tensor{shape: append([]int(nil), shape...), dtype: dt, device: CPU}
	if dt == Float64 {
		t.f64 = make([]float64, n)
	} else {
		t.dtype = Float32
		t.f32 = make([]float32, n)
	}
	return t
}

// FromFloat32 wraps data (not copied) as a CPU tensor of the given shape.
func FromFloat32(data []float32, shape ...int) (*Tensor, error) {
	if numel(shape) != len(data) || !validShape(shape) {
		return nil, fmt.Errorf("engine.FromFloat32: %d values do not fill shape %v", len(data), shape)
	}
	return &Tensor{shape: append([]int(nil), shape...), dtype: Float32, device: CPU, f32: data}, nil
}

// FromFloat64 wraps data (not copied) as a CPU tensor of the given shape.
func FromFloat64(data []float64, shape ...int) (*Tensor, error) {
	if numel(shape) != len(data) || !validShape(shape) {
		return nil, fmt.Errorf("engine.FromFloat64: %d values do not fill shape %v", len(data), shape)
	}
	return &Tensor{shape: append([]int(nil), shape...), dtype: Float64, device: CPU, f64: data}, nil
}

// Ensure returns t when it already has dtype dt and the given shape, and a new
// zeroed tensor otherwise. Layers keep their buffers with it, so a training
// step with unchanged shapes allocates nothing.
func Ensure(t *Tensor, dt DType, shape ...int) *Tensor {
	if t != nil && t.dtype == dt && t.device == CPU && sameShape(t.shape, shape) {
		return t
	}
	return New(dt, shape...)
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

func validShape(shape []int) bool {
	for _, d := range shape {
		if d < 0 {
			return false
		}
	}
	return true
}

func sameShape(a, b []int) bool { return slices.Equal(a, b) }

// Shape returns the tensor's shape. The slice must not be modified.
func (t *Tensor) Shape() []int { return t.shape }

// Dim returns the size of axis i; negative i counts from the end.
func (t *Tensor) Dim(i int) int {
	if i < 0 {
		i += len(t.shape)
	}
	return t.shape[i]
}

// Rank is the number of axes.
func (t *Tensor) Rank() int { return len(t.shape) }

// Len is the number of elements.
func (t *Tensor) Len() int { return numel(t.shape) }

// DType is the element type.
func (t *Tensor) DType() DType { return t.dtype }

// Device is where the data lives.
func (t *Tensor) Device() Device { return t.device }

// Float32 returns the CPU data of a Float32 tensor (nil otherwise, and nil
// for a CUDA tensor: copy it to the CPU with To first).
func (t *Tensor) Float32() []float32 { return t.f32 }

// Float64 returns the CPU data of a Float64 tensor (nil otherwise).
func (t *Tensor) Float64() []float64 { return t.f64 }

// SameShape reports whether t has exactly this shape.
func (t *Tensor) SameShape(shape ...int) bool { return sameShape(t.shape, shape) }

// Reshape returns a view with a new shape and the same data; one axis may be -1.
func (t *Tensor) Reshape(shape ...int) (*Tensor, error) {
	s := append([]int(nil), shape...)
	free, known := -1, 1
	for i, d := range s {
		switch {
		case d == -1 && free < 0:
			free = i
		case d < 0:
			return nil, shapeErr("Reshape", "bad target shape", "x", t, "shape", s)
		default:
			known *= d
		}
	}
	if free >= 0 && known > 0 {
		s[free] = t.Len() / known
	}
	if numel(s) != t.Len() {
		return nil, shapeErr("Reshape", "element count differs", "x", t, "shape", s)
	}
	return &Tensor{shape: s, dtype: t.dtype, device: t.device, f32: t.f32, f64: t.f64, mem: t.mem, off: t.off, err: t.err,
		prec: t.prec}, nil
}

// View is Reshape into a tensor kept by the caller: it reuses v when v already
// views t's data with that shape, so steady-state reshapes allocate nothing.
func (t *Tensor) View(v *Tensor, shape ...int) (*Tensor, error) {
	if v != nil && v.dtype == t.dtype && sameShape(v.shape, shape) && sameData(v, t) {
		return v, nil
	}
	return t.Reshape(shape...)
}

// ViewsAt reports whether v's data is t's elements [off, off+v.Len()): a
// view Rows (of a flat t) and Reshape made. It allocates nothing, so a
// training step can check its views every time.
func (v *Tensor) ViewsAt(t *Tensor, off int) bool {
	n := v.Len()
	if v.device != t.device || v.dtype != t.dtype || off < 0 || off+n > t.Len() {
		return false
	}
	switch {
	case v.device == CUDA:
		return v.mem == t.mem && v.off == t.off+off
	case n == 0:
		return true
	case v.dtype == Float64:
		return &v.f64[0] == &t.f64[off]
	default:
		return &v.f32[0] == &t.f32[off]
	}
}

func sameData(a, b *Tensor) bool {
	if a.device != b.device {
		return false
	}
	if a.device == CUDA {
		return a.mem == b.mem && a.off == b.off
	}
	if a.dtype == Float64 {
		return len(a.f64) == len(b.f64) && (len(a.f64) == 0 || &a.f64[0] == &b.f64[0])
	}
	return len(a.f32) == len(b.f32) && (len(a.f32) == 0 || &a.f32[0] == &b.f32[0])
}

// Zero sets every element to 0. Only a CUDA tensor can fail (the device
// call's error, or the allocation error an EnsureLike tensor carries).
func (t *Tensor) Zero() error {
	if t.device == CUDA {
		if t.err != nil {
			return t.err
		}
		if err := cuda.Zero(t.dptr(), int64(4*t.Len())); err != nil {
			return fmt.Errorf("engine.Zero %v: %w", t.shape, err)
		}
		return nil
	}
	clear(t.f32)
	clear(t.f64)
	return nil
}

// ZeroAll zeroes every tensor in ts, as Zero does one at a time, with the
// CPU tensors' elements split over the worker pool: a model's gradients
// are megabytes, and zeroing mlp's 3.3 MB on one core, with the other idle,
// took 6% of its step.
// On the GPU, tensors that follow each other in one allocation (the views
// of a flat gradient buffer, layers.FlattenGrads) are cleared by one memset.
func ZeroAll(ts []*Tensor) error {
	if err := zeroDeviceRuns(ts); err != nil {
		return err
	}
	n := 0
	for _, t := range ts {
		if t.device != CUDA {
			n += t.Len()
		}
	}
	z := zeroTasks.Get().(*zeroTask)
	z.ts = ts
	if chunks := ceilDiv(n, zeroChunk); n < zeroAllMin {
		z.run(0, 0, chunks)
	} else {
		parallelFor(chunks, z)
	}
	z.ts = nil
	zeroTasks.Put(z)
	return nil
}

// zeroDeviceRuns zeroes the CUDA tensors of ts, one memset per run of them
// that are adjacent in one allocation, in order.
func zeroDeviceRuns(ts []*Tensor) error { return forDeviceRuns(ts, zeroDevice) }

// forDeviceRuns calls do once per run of the CUDA tensors of ts that lie
// end to end in one allocation, in order, with the run's first tensor and
// its elements (a flat gradient buffer is one run). Nil and CPU tensors are
// skipped.
func forDeviceRuns(ts []*Tensor, do func(first *Tensor, n int) error) error {
	var run *Tensor // the run's first tensor
	n := 0          // the run's elements
	for _, t := range ts {
		if t == nil || t.device != CUDA {
			continue
		}
		if t.err != nil {
			return t.err
		}
		if run != nil && t.mem == run.mem && t.off == run.off+n {
			n += t.Len()
			continue
		}
		if run != nil {
			if err := do(run, n); err != nil {
				return err
			}
		}
		run, n = t, t.Len()
	}
	if run == nil {
		return nil
	}
	return do(run, n)
}

// zeroDevice zeroes n float32 elements from t's first.
func zeroDevice(t *Tensor, n int) error {
	if t == nil || n == 0 {
		return nil
	}
	if err := cuda.Zero(t.dptr(), int64(4*n)); err != nil {
		return fmt.Errorf("engine.ZeroAll %v: %w", t.shape, err)
	}
	return nil
}

// Below zeroAllMin elements ZeroAll stays on the caller (a hand-off costs
// more); a part is whole chunks of zeroChunk.
const zeroAllMin, zeroChunk = 1 << 16, 1 << 14

// zeroTask zeroes chunks [lo, hi) of the CPU tensors of ts laid end to end.
type zeroTask struct{ ts []*Tensor }

var zeroTasks = taskPool{New: func() any { return new(zeroTask) }}

func (z *zeroTask) run(_, lo, hi int) {
	lo, hi = lo*zeroChunk, hi*zeroChunk
	off := 0
	for _, t := range z.ts {
		if off >= hi {
			return
		}
		if t.device == CUDA {
			continue
		}
		n := t.Len()
		if a, b := max(lo-off, 0), min(hi-off, n); a < b {
			if t.dtype == Float64 {
				clear(t.f64[a:b])
			} else {
				clear(t.f32[a:b])
			}
		}
		off += n
	}
}

// Fill sets every element to v. Only a CUDA tensor can fail, as with Zero.
func (t *Tensor) Fill(v float64) error {
	if t.device == CUDA {
		if t.err != nil {
			return t.err
		}
		if err := fillCUDA(t, float32(v)); err != nil {
			return fmt.Errorf("engine.Fill %v: %w", t.shape, err)
		}
		return nil
	}
	for i := range t.f32 {
		t.f32[i] = float32(v)
	}
	for i := range t.f64 {
		t.f64[i] = v
	}
	return nil
}

// CopyFrom copies src's values into t; shapes must have the same element
// count, and dtypes may differ (values are converted). A tensor carrying an
// error (EnsureLike, a failed Clone or As) is neither source nor target: its
// data is not what it claims.
func (t *Tensor) CopyFrom(src *Tensor) error {
	if err := cmp.Or(src.err, t.err); err != nil {
		return fmt.Errorf("CopyFrom: %w", err)
	}
	if src.Len() != t.Len() {
		return shapeErr("CopyFrom", "element count differs", "dst", t, "src", src)
	}
	if t.device == CUDA || src.device == CUDA {
		return t.copyCUDA(src)
	}
	t.copyHost(src)
	return nil
}

// copyHost is CopyFrom between two CPU tensors of equal length, which
// cannot fail.
func (t *Tensor) copyHost(src *Tensor) {
	switch {
	case t.dtype == Float32 && src.dtype == Float32:
		copy(t.f32, src.f32)
	case t.dtype == Float64 && src.dtype == Float64:
		copy(t.f64, src.f64)
	case t.dtype == Float32:
		for i, v := range src.f64 {
			t.f32[i] = float32(v)
		}
	default:
		for i, v := range src.f32 {
			t.f64[i] = float64(v)
		}
	}
}

// Clone returns a copy with its own data. A CUDA copy that fails carries the
// device error (Err, and the next op given it returns it), as EnsureLike's
// tensors do; a CUDA tensor the device has no room to copy is copied to the
// CPU instead.
func (t *Tensor) Clone() *Tensor {
	if t.device == CUDA {
		c, err := NewOn(CUDA, Float32, t.shape...)
		if err != nil {
			return t.host().Clone() // out of device memory: a CPU copy
		}
		if err := c.copyCUDA(t); err != nil {
			c.err = fmt.Errorf("engine.Clone %v: %w", t.shape, err)
		}
		return c
	}
	c := New(t.dtype, t.shape...)
	c.copyHost(t)
	c.err = t.err
	return c
}

// As returns a copy converted to dtype dt, on the CPU. The copy of a CUDA
// tensor whose download failed carries the error, as Clone's does.
func (t *Tensor) As(dt DType) *Tensor {
	h := t.host()
	c := New(dt, t.shape...)
	c.copyHost(h)
	c.err = h.err
	return c
}

// At returns element i of the flat data as float64: for CPU tensors, where
// it cannot fail, and tests. On a CUDA tensor a read that fails gives NaN,
// which cannot be told from a NaN in the data: code that may be given a
// device tensor calls Get, which returns the error.
func (t *Tensor) At(i int) float64 {
	v, err := t.Get(i)
	if err != nil {
		return math.NaN()
	}
	return v
}

// Get is At with the error of a CUDA read.
func (t *Tensor) Get(i int) (float64, error) {
	if t.device == CUDA {
		if t.err != nil {
			return math.NaN(), t.err
		}
		var v float32
		if err := cuda.CopyDtoH(unsafe.Pointer(&v), t.dptr()+cuda.Ptr(4*i), 4); err != nil {
			return math.NaN(), fmt.Errorf("engine.Get %v element %d: %w", t.shape, i, err)
		}
		return float64(v), nil
	}
	if t.dtype == Float64 {
		return t.f64[i], nil
	}
	return float64(t.f32[i]), nil
}

// SetAt sets element i of the flat data. Only a CUDA tensor can fail.
func (t *Tensor) SetAt(i int, v float64) error {
	if t.device == CUDA {
		if t.err != nil {
			return t.err
		}
		f := float32(v)
		if err := cuda.CopyHtoD(t.dptr()+cuda.Ptr(4*i), unsafe.Pointer(&f), 4); err != nil {
			return fmt.Errorf("engine.SetAt %v element %d: %w", t.shape, i, err)
		}
		return nil
	}
	if t.dtype == Float64 {
		t.f64[i] = v
	} else {
		t.f32[i] = float32(v)
	}
	return nil
}

// Values returns the data as a new []float64: for CPU tensors and tests. On
// a CUDA tensor a download that fails gives NaN in every element; code that
// may be given a device tensor calls ValuesErr.
func (t *Tensor) Values() []float64 {
	if t.device == CUDA {
		return t.host().hostValues() // NaN where the download failed
	}
	return t.hostValues()
}

// ValuesErr is Values with the error of a CUDA download (the values are
// then NaN) or the one a failed copy carries.
func (t *Tensor) ValuesErr() ([]float64, error) {
	h := t.host()
	return h.hostValues(), h.err
}

func (t *Tensor) hostValues() []float64 {
	out := make([]float64, t.Len())
	if t.dtype == Float64 {
		copy(out, t.f64)
		return out
	}
	for i, v := range t.f32 {
		out[i] = float64(v)
	}
	return out
}

// HasNaN reports whether any element is NaN or ±Inf: for CPU tensors and
// tests. On a CUDA tensor whose check fails it panics with the device's
// error rather than blame the data; NonFinite returns that error.
func (t *Tensor) HasNaN() bool {
	bad, err := t.NonFinite()
	if err != nil {
		panic(fmt.Sprintf("engine.HasNaN: the device check failed (use NonFinite): %v", err))
	}
	return bad
}

// NonFinite reports whether any element is NaN or ±Inf, and the error of a
// CUDA check that failed (a failed check is not a NaN).
func (t *Tensor) NonFinite() (bool, error) {
	if t.device == CUDA {
		// Σx² is NaN or Inf exactly when some element is (or overflows,
		// which training must treat the same way).
		s, err := sumSquaresCUDA(t)
		if err != nil {
			return false, fmt.Errorf("engine.NonFinite %v: %w", t.shape, err)
		}
		return math.IsNaN(s) || math.IsInf(s, 0), nil
	}
	for _, v := range t.f32 {
		if v != v || math.IsInf(float64(v), 0) {
			return true, nil
		}
	}
	for _, v := range t.f64 {
		if v != v || math.IsInf(v, 0) {
			return true, nil
		}
	}
	return false, nil
}

func (t *Tensor) String() string { return "Tensor" + t.describe() }

// FromDense converts a gorgonia.org/tensor Dense of float32 or float64 into a
// CPU tensor. The data is shared, not copied, when the Dense is contiguous.
func FromDense(d *tensor.Dense) (*Tensor, error) {
	if d == nil {
		return nil, fmt.Errorf("engine.FromDense: nil tensor")
	}
	shape := []int(d.Shape())
	if slices.Contains(shape, 0) { // no values: gorgonia's Data panics on them
		switch d.Dtype() {
		case tensor.Float32:
			return New(Float32, shape...), nil
		case tensor.Float64:
			return New(Float64, shape...), nil
		}
		return nil, fmt.Errorf("engine.FromDense: dtype %v (want float32 or float64)", d.Dtype())
	}
	if d.IsScalar() {
		shape = []int{}
	}
	if d.RequiresIterator() {
		d = d.Materialize().(*tensor.Dense)
	}
	switch data := d.Data().(type) {
	case []float32:
		return FromFloat32(data, shape...)
	case []float64:
		return FromFloat64(data, shape...)
	case float32:
		return FromFloat32([]float32{data}, shape...)
	case float64:
		return FromFloat64([]float64{data}, shape...)
	}
	return nil, fmt.Errorf("engine.FromDense: unsupported dtype %v (want float32 or float64)", d.Dtype())
}

// Dense returns the tensor as a gorgonia.org/tensor Dense sharing its data:
// for CPU tensors and tests. A CUDA tensor's Dense is a copy, NaN where the
// download failed; code that may be given a device tensor calls DenseErr.
func (t *Tensor) Dense() *tensor.Dense {
	return t.host().denseOnHost() // NaN where the download failed
}

// DenseErr is Dense with the error of a CUDA download or the one a failed
// copy carries.
func (t *Tensor) DenseErr() (*tensor.Dense, error) {
	h := t.host()
	return h.denseOnHost(), h.err
}

func (t *Tensor) denseOnHost() *tensor.Dense {
	shape := append([]int(nil), t.shape...)
	if len(shape) == 0 {
		shape = []int{1}
	}
	if t.dtype == Float64 {
		return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(t.f64))
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(t.f32))
}
