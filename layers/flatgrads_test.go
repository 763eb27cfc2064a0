package layers

import (
	"testing"

	"github.com/kiln-ml/kiln/cuda"
	"github.com/kiln-ml/kiln/engine"
)

// FlattenGrads keeps every gradient's values, makes each a view of its part
// of the flat buffer (a change to the buffer is a change to the gradients),
// and GradsIn tells when a move has replaced the views.
func TestFlattenGrads(t *testing.T) {
	m, err := Build("lenet", Spec{Channels: 1, Height: 28, Width: 28, Classes: 10, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, params := Params(m)
	var want []float64
	for i, p := range params {
		for j := range p.Grad.Len() {
			v := float64(i) + float64(j)/1e4
			if err := p.Grad.SetAt(j, v); err != nil {
				t.Fatal(err)
			}
			want = append(want, v)
		}
	}
	flat, err := FlattenGrads(params)
	if err != nil {
		t.Fatal(err)
	}
	if !GradsIn(flat, params) || flat.Len() != len(want) {
		t.Fatalf("GradsIn %v, flat length %d, want true, %d", GradsIn(flat, params), flat.Len(), len(want))
	}
	for i, v := range flat.Values() {
		if float32(v) != float32(want[i]) {
			t.Fatalf("flat[%d] = %v, want %v: FlattenGrads lost a value", i, v, want[i])
		}
	}
	if err := engine.Scale(flat, 2); err != nil {
		t.Fatal(err)
	}
	if got := params[3].Grad.At(1); float32(got) != float32(2*(3+1e-4)) {
		t.Errorf("after scaling the buffer, gradient 3 [1] = %v, want %v", got, 2*(3+1e-4))
	}
	if a := testing.AllocsPerRun(10, func() { GradsIn(flat, params) }); a != 0 {
		t.Errorf("GradsIn allocates %v times: the step calls it every time", a)
	}
	if GradsIn(flat, params[1:]) {
		t.Error("GradsIn of all but the first parameter is true")
	}
	Convert(m, engine.Float32) // new gradient tensors, as a move makes
	if GradsIn(flat, params) {
		t.Error("GradsIn still true after Convert replaced the gradients")
	}
}

// On the device the views are offsets into one allocation.
func TestCUDAFlattenGrads(t *testing.T) {
	if _, err := engine.OpenDevice(engine.CUDA); err != nil {
		t.Skipf("skipped: no CUDA device (%v)", err)
	}
	m, err := Build("mlp", Spec{Channels: 1, Height: 8, Width: 8, Classes: 3, Hidden: 8, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer Release(m)
	if err := ToDevice(m, engine.CUDA); err != nil {
		t.Fatal(err)
	}
	_, params := Params(m)
	for _, p := range params {
		if err := p.Grad.Fill(1); err != nil {
			t.Fatal(err)
		}
	}
	flat, err := FlattenGrads(params)
	if err != nil {
		t.Fatal(err)
	}
	defer flat.Release()
	if !GradsIn(flat, params) {
		t.Fatal("GradsIn is false right after FlattenGrads")
	}
	if err := flat.Fill(3); err != nil {
		t.Fatal(err)
	}
	last := params[len(params)-1].Grad
	if v, err := last.ValuesErr(); err != nil || v[len(v)-1] != 3 {
		t.Errorf("the last gradient after filling the buffer: %v (%v), want 3s", v, err)
	}
}

// FlattenModelGrads on the GPU: the model owns the buffer (its gradients'
// values kept, a second call is no work), Release frees every byte, and a
// move to the CPU gives the gradients their own tensors, their values, and
// frees the buffer; another buffer taking the gradients is freed next call.
func TestCUDAFlattenModelGradsOwnership(t *testing.T) {
	if _, err := engine.OpenDevice(engine.CUDA); err != nil {
		t.Skipf("skipped: no CUDA device (%v)", err)
	}
	inUse := func() int64 { return cuda.Memory().InUse }
	build := func() (*Model, []*Param) {
		m, err := Build("lenet", Spec{Channels: 1, Height: 12, Width: 12, Classes: 10, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := ToDevice(m, engine.CUDA); err != nil {
			t.Fatal(err)
		}
		_, params := Params(m)
		for i, p := range params {
			if err := p.Grad.Fill(float64(i + 1)); err != nil {
				t.Fatal(err)
			}
		}
		return m, params
	}
	gradBytes := func(params []*Param) (n int64) {
		for _, p := range params {
			n += int64(4 * p.Grad.Len())
		}
		return n
	}
	gpuRounding := func(params []*Param) (n int64) {
		for _, p := range params {
			b := int64(4 * p.Grad.Len())
			n += (b+511)&^511 - b
		}
		return n
	}
	checkGrads := func(what string, params []*Param) {
		t.Helper()
		for i, p := range params {
			if got := p.Grad.At(p.Grad.Len() - 1); got != float64(i+1) {
				t.Fatalf("%s: gradient %d holds %v, want %v", what, i, got, i+1)
			}
		}
	}

	base := inUse()
	m, params := build()
	withModel := inUse()
	if err := FlattenModelGrads(params); err != nil {
		t.Fatal(err)
	}
	if !GradsIn(params[0].gradBuf, params) {
		t.Fatal("the gradients are not views of the model's buffer")
	}
	checkGrads("flattened", params)
	buf := params[0].gradBuf
	if err := FlattenModelGrads(params); err != nil || params[0].gradBuf != buf {
		t.Fatalf("a second call made a new buffer (err %v)", err)
	}
	// The gradients' own tensors went back to the cache; the buffer holds
	// them all. On a GPU the allocator rounds every block up to 512 bytes,
	// so memory in use may fall by up to the gradients' rounding and grow by
	// at most the buffer's; a second copy of the gradients would show.
	if got := inUse() - withModel; got < -gpuRounding(params) || got > 511 {
		t.Errorf("flattening changed the memory in use by %d bytes; the gradients take %d (%d more in 512-byte blocks)",
			got, gradBytes(params), gpuRounding(params))
	}
	other, err := FlattenGrads(params) // someone else's buffer takes the gradients
	if err != nil {
		t.Fatal(err)
	}
	if err := FlattenModelGrads(params); err != nil || params[0].gradBuf == buf || !buf.Released() {
		t.Fatalf("after another buffer took the gradients: err %v, old buffer released %v", err, buf.Released())
	}
	other.Release()
	checkGrads("flattened again", params)
	Release(m)
	if got := inUse(); got != base {
		t.Errorf("after Release %d bytes in use, %d before the model", got, base)
	}

	m, params = build()
	defer Release(m)
	if err := FlattenModelGrads(params); err != nil {
		t.Fatal(err)
	}
	buf = params[0].gradBuf
	if err := ToDevice(m, engine.CPU); err != nil {
		t.Fatal(err)
	}
	if !buf.Released() || params[0].gradBuf != nil || params[0].Grad.Device() != engine.CPU {
		t.Fatalf("after the move to the CPU: buffer released %v, still held %v", buf.Released(), params[0].gradBuf != nil)
	}
	checkGrads("moved to the CPU", params)
	if got := inUse(); got != base {
		t.Errorf("after the move to the CPU %d bytes in use, %d before the model", got, base)
	}
}
