package layers

import (
	"testing"

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
