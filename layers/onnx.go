package layers

import (
	"encoding/json"
	"fmt"
	"math"

	"github.com/kiln-ml/kiln/onnx"
)

// ONNX export: a model's evaluation-mode forward pass as an ONNX graph of
// opset 17's primitive operators. Batch norm uses its running statistics,
// dropout is the identity, and the input is the normalised image, so the
// graph computes what Forward computes after SetTraining(false). Weights
// keep their state_dict names; the nodes are named after the layers.

// ONNXInfo is what an exported model says about its inputs and outputs
// besides the graph. Nil fields are unknown and left out of the file.
type ONNXInfo struct {
	// Mean and Std are the per-channel normalisation of the input: a pixel
	// value v in [0, 1] goes in as (v − Mean[c]) / Std[c].
	Mean, Std []float64
	// Classes names the logits in order (classification heads).
	Classes []string
	// Target maps a regression head's output to the target's units.
	Target *ONNXTarget
	// ProducerVersion is the version of Kiln that wrote the file.
	ProducerVersion string
}

// ONNXTarget is a regression target's units: value = output·Scale + Shift
// (the head learns the standardised target).
type ONNXTarget struct {
	Name  string  `json:"name,omitempty"`
	Scale float64 `json:"scale"`
	Shift float64 `json:"shift"`
}

// ONNX names of the graph's input and output, and of the batch dimension.
const (
	ONNXInput  = "input"
	ONNXOutput = "logits"
	ONNXBatch  = "N"
)

// ONNXExporter is a layer that writes its own ONNX nodes: a layer of one's
// own can be exported by implementing it. The built-in layers are written
// by this file and onnx_*.go.
type ONNXExporter interface {
	Layer
	// ExportONNX adds nodes computing the layer's evaluation-mode output
	// from the graph value x and returns the output's value name. prefix is
	// the layer's full name, the prefix of its parameters' names.
	ExportONNX(g *onnx.Graph, prefix, x string) (string, error)
}

// ExportONNX writes m's evaluation-mode forward pass as an ONNX model (IR
// version 8, opset 17): one float32 input "input" (N, C, H, W) with N
// dynamic, one output "logits" (N, outputs), and metadata_props mean, std
// and classes as JSON arrays where info has them.
func ExportONNX(m *Model, info ONNXInfo) (*onnx.ModelProto, error) {
	meta, err := onnxMetadata(m, info)
	if err != nil {
		return nil, err
	}
	s := m.Spec
	batch := onnx.Dim{Param: ONNXBatch}
	g := onnx.NewGraph(m.Name)
	x, err := g.Input(ONNXInput, batch, onnx.Dim{Size: int64(s.Channels)}, onnx.Dim{Size: int64(s.Height)},
		onnx.Dim{Size: int64(s.Width)})
	if err != nil {
		return nil, err
	}
	e := &onnxEmitter{g: g, consts: map[string]string{}}
	y, err := e.layer("", m.Sequential, x)
	if err != nil {
		return nil, fmt.Errorf("onnx export of %s: %w", m.Name, err)
	}
	if err := g.Output(ONNXOutput, y, batch, onnx.Dim{Size: int64(s.Outputs())}); err != nil {
		return nil, err
	}
	input := "the normalised image: a pixel byte b as (b/255 - mean[c]) / std[c]"
	if s.Height == 1 && s.Width == 1 {
		input = "a table's row of features, each raw value x as (x - mean[f]) / std[f]"
	}
	doc := fmt.Sprintf("Kiln %s for %d×%d×%d inputs, %s head with %d outputs. The input is %s "+
		"(the metadata's mean and std); the output is the head's raw values (logits).",
		m.Name, s.Channels, s.Height, s.Width, map[bool]string{false: "classification", true: "regression"}[s.Regression],
		s.Outputs(), input)
	return g.Model(onnx.ModelInfo{Producer: "kiln", ProducerVersion: info.ProducerVersion, Doc: doc, Metadata: meta}), nil
}

// onnxMetadata is the model's metadata_props: JSON arrays mean, std and
// classes, each when known and of the size the model implies, and the
// model's name.
func onnxMetadata(m *Model, info ONNXInfo) (map[string]string, error) {
	s := m.Spec
	meta := map[string]string{"model": m.Name}
	if (info.Mean == nil) != (info.Std == nil) {
		return nil, fmt.Errorf("onnx export: mean and std must be given together")
	}
	if info.Mean != nil {
		if len(info.Mean) != s.Channels || len(info.Std) != s.Channels {
			return nil, fmt.Errorf("onnx export: %d means and %d stds for %d channels", len(info.Mean), len(info.Std), s.Channels)
		}
		for _, v := range append(append([]float64{}, info.Mean...), info.Std...) {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("onnx export: normalisation constant %v", v)
			}
		}
		meta["mean"] = mustJSON(info.Mean)
		meta["std"] = mustJSON(info.Std)
	}
	if info.Classes != nil {
		if s.Regression || len(info.Classes) != s.Outputs() {
			return nil, fmt.Errorf("onnx export: %d class names for a %s head with %d outputs",
				len(info.Classes), map[bool]string{false: "classification", true: "regression"}[s.Regression], s.Outputs())
		}
		meta["classes"] = mustJSON(info.Classes)
	}
	if t := info.Target; t != nil {
		if !s.Regression || math.IsNaN(t.Scale+t.Shift) || math.IsInf(t.Scale+t.Shift, 0) || t.Scale == 0 {
			return nil, fmt.Errorf("onnx export: target scale %v and shift %v for a %s head", t.Scale, t.Shift,
				map[bool]string{false: "classification", true: "regression"}[s.Regression])
		}
		b, _ := json.Marshal(t)
		meta["target"] = string(b)
	}
	return meta, nil
}

// mustJSON encodes finite numbers or strings, which cannot fail.
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// onnxEmitter adds layers' nodes to a graph, sharing the small constants
// (axes, shapes, GELU's factors) between them.
type onnxEmitter struct {
	g      *onnx.Graph
	consts map[string]string
}

// layer adds l's nodes for input x under the name prefix and returns the
// output's value name.
func (e *onnxEmitter) layer(prefix string, l Layer, x string) (string, error) {
	switch l := l.(type) {
	case ONNXExporter:
		return l.ExportONNX(e.g, prefix, x)
	case *Model:
		return e.layer(prefix, l.Sequential, x)
	case *Sequential:
		return e.sequential(prefix, l, x)
	case *Residual:
		return e.residual(prefix, l, x)
	case *GMLPBlock:
		return e.residual(prefix, l.residual, x)
	case *Dropout:
		return x, nil // the identity at inference
	case *Flatten:
		return e.g.Node("Flatten", nodeName(prefix, "flatten"), []string{x}, onnx.AttrInt("axis", 1))
	case *Act:
		return e.act(prefix, l, x)
	case *Conv2D:
		return e.conv(prefix, l, x)
	case *Linear:
		return e.linear(prefix, l, x)
	case *TokenLinear:
		return e.tokenLinear(prefix, l, x)
	case *BatchNorm2D:
		return e.batchNorm(prefix, l, x)
	case *LayerNorm:
		return e.layerNorm(prefix, l, x)
	case *MaxPool2D:
		return e.pool("MaxPool", prefix, l.P, x)
	case *AvgPool2D:
		return e.pool("AveragePool", prefix, l.P, x, onnx.AttrInt("count_include_pad", 1))
	case *GlobalAvgPool:
		return e.globalPool("GlobalAveragePool", prefix, x)
	case *ChannelAttention:
		return e.channelAttention(prefix, l, x)
	case *SpatialAttention:
		return e.spatialAttention(prefix, l, x)
	case *Inception:
		return e.inception(prefix, l, x)
	case *SpatialGatingUnit:
		return e.spatialGating(prefix, l, x)
	case *PatchEmbed:
		return e.patchEmbed(prefix, l, x)
	case *TokenMean:
		return e.g.Node("ReduceMean", nodeName(prefix, "token_mean"), []string{x},
			onnx.AttrInts("axes", 1), onnx.AttrInt("keepdims", 0))
	}
	return "", fmt.Errorf("layer %q (%T) has no ONNX form (implement layers.ONNXExporter)", prefix, l)
}

func (e *onnxEmitter) sequential(prefix string, s *Sequential, x string) (string, error) {
	var err error
	for i, l := range s.layers {
		if x, err = e.layer(childName(prefix, s.names[i]), l, x); err != nil {
			return "", err
		}
	}
	return x, nil
}

func (e *onnxEmitter) residual(prefix string, r *Residual, x string) (string, error) {
	y, err := e.layer(prefix, r.Body, x)
	if err != nil {
		return "", err
	}
	return e.g.Node("Add", nodeName(prefix, "residual")+"/add", []string{x, y})
}

// nodeName is a layer's full name, or what it is when it has none (the
// model's own layers have a name; this covers a bare layer exported alone).
func nodeName(prefix, what string) string {
	if prefix == "" {
		return what
	}
	return prefix
}

// param adds a parameter or buffer as a float32 weight under its
// state_dict name.
func (e *onnxEmitter) param(name string, p *Param) (string, error) {
	vals, err := p.Value.ValuesErr()
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	data := make([]float32, len(vals))
	for i, v := range vals {
		data[i] = float32(v)
	}
	return e.g.Float(name, int64s(p.Value.Shape()), data)
}

// constFloat is a shared float32 scalar constant.
func (e *onnxEmitter) constFloat(name string, v float32) (string, error) {
	if n, ok := e.consts[name]; ok {
		return n, nil
	}
	n, err := e.g.Float(name, nil, []float32{v})
	e.consts[name] = n
	return n, err
}

// constInts is a shared int64 vector constant (axes, shapes).
func (e *onnxEmitter) constInts(name string, v ...int64) (string, error) {
	if n, ok := e.consts[name]; ok {
		return n, nil
	}
	n, err := e.g.Int64s(name, []int64{int64(len(v))}, v)
	e.consts[name] = n
	return n, err
}

func int64s(v []int) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out
}

// onnxChain adds nodes until the first error, which it keeps: composite
// layers write their nodes in a row and check once.
type onnxChain struct {
	e   *onnxEmitter
	err error
}

func (c *onnxChain) node(op, name string, in ...string) string {
	return c.nodeAttrs(op, name, in)
}

func (c *onnxChain) nodeAttrs(op, name string, in []string, attrs ...*onnx.AttributeProto) string {
	if c.err != nil {
		return ""
	}
	y, err := c.e.g.Node(op, name, in, attrs...)
	c.err = err
	return y
}

// layer adds a child layer's nodes.
func (c *onnxChain) layer(prefix string, l Layer, x string) string {
	if c.err != nil {
		return ""
	}
	y, err := c.e.layer(prefix, l, x)
	c.err = err
	return y
}

func (c *onnxChain) param(name string, p *Param) string {
	if c.err != nil {
		return ""
	}
	y, err := c.e.param(name, p)
	c.err = err
	return y
}

func (c *onnxChain) constFloat(name string, v float32) string {
	if c.err != nil {
		return ""
	}
	y, err := c.e.constFloat(name, v)
	c.err = err
	return y
}

func (c *onnxChain) constInts(name string, v ...int64) string {
	if c.err != nil {
		return ""
	}
	y, err := c.e.constInts(name, v...)
	c.err = err
	return y
}
