package onnx

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

// smallModel is y = relu(x·Wᵀ + b) reshaped, with x (N, 3).
func smallModel(t *testing.T) *ModelProto {
	t.Helper()
	g := NewGraph("small")
	x, err := g.Input("x", Dim{Param: "N"}, Dim{Size: 3})
	must(t, err)
	w, err := g.Float("fc.weight", []int64{2, 3}, []float32{1, -2, 3.5, 0.25, 1e-8, -0})
	must(t, err)
	b, err := g.Float("fc.bias", []int64{2}, []float32{0.5, -0.5})
	must(t, err)
	shape, err := g.Int64s("shape", []int64{2}, []int64{-1, 2})
	must(t, err)
	h, err := g.Node("Gemm", "fc", []string{x, w, b}, AttrInt("transB", 1), AttrFloat("alpha", 1))
	must(t, err)
	r, err := g.Node("Relu", "relu", []string{h})
	must(t, err)
	r, err = g.Node("Reshape", "relu", []string{r, shape}, AttrInts("allowzero", 0)) // a taken name
	must(t, err)
	must(t, g.Output("y", r, Dim{Param: "N"}, Dim{Size: 2}))
	return g.Model(ModelInfo{Producer: "kiln", Doc: "test", Metadata: map[string]string{"std": "[1]", "mean": "[0]"}})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestRoundTrip encodes a model and decodes it with the generated types:
// the same message, and every field where the format puts it.
func TestRoundTrip(t *testing.T) {
	m := smallModel(t)
	b, err := Marshal(m)
	must(t, err)
	again, err := Marshal(smallModel(t))
	must(t, err)
	if !bytes.Equal(b, again) {
		t.Error("the same model encodes to different bytes")
	}
	d, err := Unmarshal(b)
	must(t, err)
	if !proto.Equal(m, d) {
		t.Fatalf("decoded model differs:\n%v\n%v", m, d)
	}
	if d.GetIrVersion() != 8 || len(d.OpsetImport) != 1 || d.OpsetImport[0].GetVersion() != 17 || d.GetProducerName() != "kiln" {
		t.Errorf("ir %d, opsets %v, producer %q", d.GetIrVersion(), d.OpsetImport, d.GetProducerName())
	}
	var keys []string
	for _, p := range d.MetadataProps {
		keys = append(keys, p.GetKey()+"="+p.GetValue())
	}
	if !slices.Equal(keys, []string{"mean=[0]", "std=[1]"}) {
		t.Errorf("metadata_props %v, want mean then std", keys)
	}
	g := d.GetGraph()
	in := g.Input[0].GetType().GetTensorType()
	if g.Input[0].GetName() != "x" || in.GetElemType() != int32(TensorProto_FLOAT) ||
		in.GetShape().Dim[0].GetDimParam() != "N" || in.GetShape().Dim[1].GetDimValue() != 3 {
		t.Errorf("input %v", g.Input[0])
	}
	var ops, outs []string
	for _, n := range g.Node {
		ops = append(ops, n.GetOpType())
		outs = append(outs, strings.Join(n.Output, ","))
	}
	// The output renames the node making it (no Identity), and the second
	// node asking for "relu" got a name of its own.
	if !slices.Equal(ops, []string{"Gemm", "Relu", "Reshape"}) || !slices.Equal(outs, []string{"fc", "relu", "y"}) ||
		!slices.Equal(g.Node[2].Input, []string{"relu", "shape"}) || g.Output[0].GetName() != "y" {
		t.Errorf("nodes %v with outputs %v, last reads %v; graph outputs %v", ops, outs, g.Node[2].Input, g.Output)
	}
	checkAttrs(t, g.Node[0])
	checkWeights(t, g.Initializer)
}

func checkAttrs(t *testing.T, gemm *NodeProto) {
	t.Helper()
	a := gemm.Attribute
	if len(a) != 2 || a[0].GetName() != "transB" || a[0].GetType() != AttributeProto_INT || a[0].GetI() != 1 ||
		a[1].GetName() != "alpha" || a[1].GetType() != AttributeProto_FLOAT || a[1].GetF() != 1 {
		t.Errorf("Gemm attributes %v", a)
	}
}

func checkWeights(t *testing.T, inits []*TensorProto) {
	t.Helper()
	if len(inits) != 3 {
		t.Fatalf("%d initializers, want 3", len(inits))
	}
	w, err := FloatData(inits[0])
	must(t, err)
	if inits[0].GetName() != "fc.weight" || !slices.Equal(inits[0].Dims, []int64{2, 3}) ||
		!slices.Equal(w, []float32{1, -2, 3.5, 0.25, 1e-8, 0}) || len(inits[0].RawData) != 24 {
		t.Errorf("fc.weight: dims %v, values %v", inits[0].Dims, w)
	}
	s := inits[2]
	if s.GetDataType() != int32(TensorProto_INT64) || len(s.RawData) != 16 ||
		int64(binary.LittleEndian.Uint64(s.RawData[0:])) != -1 || binary.LittleEndian.Uint64(s.RawData[8:]) != 2 {
		t.Errorf("int64 constant: type %d, raw %x", s.GetDataType(), s.RawData)
	}
	if _, err := FloatData(s); err == nil {
		t.Error("FloatData accepted an int64 tensor")
	}
}

// TestOutputOfInput passes an input straight out: that takes an Identity.
func TestOutputOfInput(t *testing.T) {
	g := NewGraph("id")
	x, err := g.Input("x", Dim{Size: 1})
	must(t, err)
	must(t, g.Output("y", x, Dim{Size: 1}))
	n := g.Model(ModelInfo{}).Graph.Node
	if len(n) != 1 || n[0].GetOpType() != "Identity" || n[0].Input[0] != "x" || n[0].Output[0] != "y" {
		t.Errorf("nodes %v", n)
	}
}

// TestGraphErrors: what the builder refuses.
func TestGraphErrors(t *testing.T) {
	g := NewGraph("bad")
	x, err := g.Input("x", Dim{Size: 2})
	must(t, err)
	_, err = g.Float("w", []int64{2}, []float32{1, 2})
	must(t, err)
	for name, err := range map[string]error{
		"taken input":    second(g.Input("x")),
		"taken weight":   second(g.Float("w", []int64{1}, []float32{1})),
		"short weight":   second(g.Float("v", []int64{2, 2}, []float32{1, 2, 3})),
		"negative dim":   second(g.Int64s("s", []int64{-1}, nil)),
		"unknown input":  second(g.Node("Relu", "r", []string{"nope"})),
		"unknown output": g.Output("y", "nope"),
		"taken output":   g.Output("w", x),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := Unmarshal([]byte{0xff, 0xff}); err == nil {
		t.Error("Unmarshal accepted garbage")
	}
}

func second[T any](_ T, err error) error { return err }

// TestSplitNames: a node of several outputs names them name:i; its own name
// is taken but is no value.
func TestSplitNames(t *testing.T) {
	g := NewGraph("split")
	x, err := g.Input("x", Dim{Size: 4})
	must(t, err)
	outs, err := g.NodeN("Split", "split", []string{x}, 2, AttrInt("axis", 0))
	must(t, err)
	if !slices.Equal(outs, []string{"split:0", "split:1"}) {
		t.Errorf("outputs %v", outs)
	}
	if err := g.Output("y", "split"); err == nil {
		t.Error(`"split" passed for a value`)
	}
	y, err := g.Node("Add", "split", outs)
	must(t, err)
	if y != "split_1" {
		t.Errorf("a node named like the split makes %q", y)
	}
}
