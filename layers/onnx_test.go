package layers

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/onnx"
)

// onnxOpset17 are the default domain's operators the exporter may write;
// each is in opset 17 with the inputs and attributes used here.
var onnxOpset17 = []string{"Add", "BatchNormalization", "Concat", "Conv", "Div", "Erf", "Flatten", "Gemm",
	"GlobalAveragePool", "GlobalMaxPool", "Identity", "LayerNormalization", "MatMul", "MaxPool", "AveragePool",
	"Mul", "ReduceMax", "ReduceMean", "Relu", "Reshape", "Sigmoid", "Split", "Tanh", "Transpose", "Unsqueeze"}

// TestExportONNXZooGraphs exports every zoo model at both input sizes and
// checks each graph without a runtime: known ops only, every node reading
// values made before it, and the weights exactly the state_dict. (The
// numbers are checked in ONNX Runtime by cmd/kiln's TestExportONNX.)
func TestExportONNXZooGraphs(t *testing.T) {
	for _, name := range ModelNames() {
		for _, s := range []Spec{{Channels: 1, Height: 28, Width: 28, Classes: 10}, {Channels: 3, Height: 32, Width: 32, Regression: true}} {
			m, err := Build(name, s)
			if err != nil {
				t.Fatal(err)
			}
			mp, err := ExportONNX(m, ONNXInfo{})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			checkONNXGraph(t, fmt.Sprintf("%s %dx%dx%d", name, s.Height, s.Width, s.Channels), m, mp.GetGraph())
		}
	}
}

func checkONNXGraph(t *testing.T, what string, m *Model, g *onnx.GraphProto) {
	t.Helper()
	known := map[string]bool{ONNXInput: true}
	var weights []string
	for _, w := range g.Initializer {
		known[w.GetName()] = true
		if !strings.HasPrefix(w.GetName(), "const/") {
			weights = append(weights, w.GetName())
		}
	}
	for _, n := range g.Node {
		if !slices.Contains(onnxOpset17, n.GetOpType()) {
			t.Errorf("%s: node %s is a %s", what, n.GetName(), n.GetOpType())
		}
		if n.GetOpType() == "BatchNormalization" {
			// ONNX's momentum weighs the running value, PyTorch's the
			// batch's: torch.onnx writes 1 − 0.1.
			for _, a := range n.GetAttribute() {
				if a.GetName() == "momentum" && math.Abs(float64(a.GetF())-0.9) > 1e-6 {
					t.Errorf("%s: node %s has momentum %v, want 0.9 (1 − PyTorch's 0.1)", what, n.GetName(), a.GetF())
				}
			}
		}
		for _, in := range n.Input {
			if !known[in] {
				t.Errorf("%s: node %s reads %q before it is made", what, n.GetName(), in)
			}
		}
		for _, out := range n.Output {
			if known[out] {
				t.Errorf("%s: node %s makes %q again", what, n.GetName(), out)
			}
			known[out] = true
		}
	}
	if len(g.Output) != 1 || !known[g.Output[0].GetName()] || g.Output[0].GetName() != ONNXOutput {
		t.Errorf("%s: outputs %v", what, g.Output)
	}
	slices.Sort(weights)
	var state []string
	for k := range State(m) {
		state = append(state, k)
	}
	slices.Sort(state)
	if !slices.Equal(weights, state) {
		t.Errorf("%s: weights %v, want the state_dict's %v", what, weights, state)
	}
}

// TestExportONNXMetadata: mean, std and classes are JSON arrays when given,
// absent when not, and refused when they do not fit the model.
func TestExportONNXMetadata(t *testing.T) {
	m, err := Build("mlp", Spec{Channels: 3, Height: 4, Width: 4, Classes: 2})
	if err != nil {
		t.Fatal(err)
	}
	mp, err := ExportONNX(m, ONNXInfo{Mean: []float64{0.5, 0.25, 0}, Std: []float64{1, 2, 0.125}, Classes: []string{"cat", `"dog"`}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range mp.MetadataProps {
		got[p.GetKey()] = p.GetValue()
	}
	want := map[string]string{"model": "mlp", "mean": "[0.5,0.25,0]", "std": "[1,2,0.125]", "classes": `["cat","\"dog\""]`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("metadata %v, want %v", got, want)
	}
	if mp, err = ExportONNX(m, ONNXInfo{}); err != nil || len(mp.MetadataProps) != 1 {
		t.Errorf("no info: metadata %v, %v", mp.GetMetadataProps(), err)
	}
	reg, err := Build("mlp", Spec{Channels: 3, Height: 4, Width: 4, Regression: true})
	if err != nil {
		t.Fatal(err)
	}
	for what, c := range map[string]struct {
		m    *Model
		info ONNXInfo
	}{
		"two means for three channels":  {m, ONNXInfo{Mean: []float64{0, 0}, Std: []float64{1, 1}}},
		"mean without std":              {m, ONNXInfo{Mean: []float64{0, 0, 0}}},
		"three classes for two outputs": {m, ONNXInfo{Classes: []string{"a", "b", "c"}}},
		"classes of a regression head":  {reg, ONNXInfo{Classes: []string{"a"}}},
	} {
		if _, err := ExportONNX(c.m, c.info); err == nil {
			t.Errorf("%s: no error", what)
		}
	}
}

// identityLayer is a layer of one's own that exports itself.
type identityLayer struct{ stateless }

func (identityLayer) Forward(x *engine.Tensor) (*engine.Tensor, error)  { return x, nil }
func (identityLayer) Backward(d *engine.Tensor) (*engine.Tensor, error) { return d, nil }
func (identityLayer) ExportONNX(g *onnx.Graph, prefix, x string) (string, error) {
	return g.Node("Identity", prefix, []string{x})
}

// opaqueLayer has no ONNX form.
type opaqueLayer struct{ stateless }

func (opaqueLayer) Forward(x *engine.Tensor) (*engine.Tensor, error)  { return x, nil }
func (opaqueLayer) Backward(d *engine.Tensor) (*engine.Tensor, error) { return d, nil }

// TestExportONNXOwnLayers: a layer implementing ONNXExporter writes its
// nodes; one that does not is refused by name.
func TestExportONNXOwnLayers(t *testing.T) {
	spec := Spec{Channels: 1, Height: 2, Width: 2, Classes: 4}
	own := &Model{Sequential: (&Sequential{}).Append("mine", identityLayer{}).Append("flatten", &Flatten{}), Name: "own", Spec: spec}
	mp, err := ExportONNX(own, ONNXInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if n := mp.GetGraph().GetNode(); len(n) != 2 || n[0].GetOpType() != "Identity" || n[0].GetName() != "mine" {
		t.Errorf("nodes %v", n)
	}
	bad := &Model{Sequential: (&Sequential{}).Append("block", (&Sequential{}).Append("odd", opaqueLayer{})), Name: "bad", Spec: spec}
	if _, err := ExportONNX(bad, ONNXInfo{}); err == nil || !strings.Contains(err.Error(), `"block.odd"`) {
		t.Errorf("a layer without an ONNX form: %v", err)
	}
}
