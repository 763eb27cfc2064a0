package onnx

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"

	"google.golang.org/protobuf/proto"
)

// The versions Kiln writes: IR version 8 and the default domain's opset 17,
// the newest that ONNX 1.12's checker (Debian's python3-onnx) accepts.
const (
	IRVersion = int64(Version_IR_VERSION) // 8
	Opset     = 17
)

// Graph collects one graph's inputs, weights (initializers), nodes and
// outputs in the order they are added, which is a topological order as long
// as every node is added after the nodes making its inputs.
type Graph struct {
	name    string
	inputs  []*ValueInfoProto
	outputs []*ValueInfoProto
	inits   []*TensorProto
	nodes   []*NodeProto
	names   map[string]bool // every name in use: values, and nodes with several outputs
	values  map[string]bool // inputs, weights and node outputs
	made    map[string]int  // node index making each node output
}

// NewGraph starts an empty graph called name.
func NewGraph(name string) *Graph {
	return &Graph{name: name, names: map[string]bool{}, values: map[string]bool{}, made: map[string]int{}}
}

// Dim is one dimension of a graph input or output: a fixed size, or, when
// Param is set, a size named and fixed only when the model runs (a batch).
type Dim struct {
	Size  int64
	Param string
}

// Input declares a float32 graph input and returns its name.
func (g *Graph) Input(name string, dims ...Dim) (string, error) {
	if g.names[name] {
		return "", fmt.Errorf("onnx: input %q: the name is taken", name)
	}
	g.names[name], g.values[name] = true, true
	g.inputs = append(g.inputs, floatValueInfo(name, dims))
	return name, nil
}

// Output makes value a float32 graph output called name. The node making
// value is renamed to give it name, so no Identity node is needed unless
// value is a graph input or a weight.
func (g *Graph) Output(name, value string, dims ...Dim) error {
	if !g.values[value] {
		return fmt.Errorf("onnx: output %q: no value %q", name, value)
	}
	if name != value {
		if g.names[name] {
			return fmt.Errorf("onnx: output %q: the name is taken", name)
		}
		if _, ok := g.made[value]; ok && !g.isOutput(value) {
			g.rename(value, name)
		} else {
			g.nodes = append(g.nodes, &NodeProto{Name: proto.String(name), OpType: proto.String("Identity"),
				Input: []string{value}, Output: []string{name}})
			g.names[name], g.values[name] = true, true
		}
	}
	g.outputs = append(g.outputs, floatValueInfo(name, dims))
	return nil
}

func (g *Graph) isOutput(name string) bool {
	return slices.ContainsFunc(g.outputs, func(v *ValueInfoProto) bool { return v.GetName() == name })
}

// rename gives the node output from the name to, in its node and every
// node reading it.
func (g *Graph) rename(from, to string) {
	i := g.made[from]
	delete(g.made, from)
	g.made[to] = i
	delete(g.names, from)
	delete(g.values, from)
	g.names[to], g.values[to] = true, true
	for _, n := range g.nodes {
		for k, in := range n.Input {
			if in == from {
				n.Input[k] = to
			}
		}
		for k, out := range n.Output {
			if out == from {
				n.Output[k] = to
			}
		}
	}
}

func floatValueInfo(name string, dims []Dim) *ValueInfoProto {
	shape := &TensorShapeProto{}
	for _, d := range dims {
		dim := &TensorShapeProto_Dimension{}
		if d.Param != "" {
			dim.Value = &TensorShapeProto_Dimension_DimParam{DimParam: d.Param}
		} else {
			dim.Value = &TensorShapeProto_Dimension_DimValue{DimValue: d.Size}
		}
		shape.Dim = append(shape.Dim, dim)
	}
	elem := int32(TensorProto_FLOAT)
	return &ValueInfoProto{Name: proto.String(name), Type: &TypeProto{Value: &TypeProto_TensorType{
		TensorType: &TypeProto_Tensor{ElemType: &elem, Shape: shape}}}}
}

// Float adds a float32 weight of the given shape, its values stored as raw
// little-endian bytes, and returns its name. A name may be given once:
// a weight used twice is added once and its name used twice.
func (g *Graph) Float(name string, dims []int64, data []float32) (string, error) {
	if err := g.checkTensor(name, dims, len(data)); err != nil {
		return "", err
	}
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	g.addInit(name, TensorProto_FLOAT, dims, raw)
	return name, nil
}

// Int64s adds an int64 constant (a shape, axes) and returns its name.
func (g *Graph) Int64s(name string, dims []int64, data []int64) (string, error) {
	if err := g.checkTensor(name, dims, len(data)); err != nil {
		return "", err
	}
	raw := make([]byte, 8*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
	}
	g.addInit(name, TensorProto_INT64, dims, raw)
	return name, nil
}

func (g *Graph) checkTensor(name string, dims []int64, n int) error {
	if g.names[name] {
		return fmt.Errorf("onnx: weight %q: the name is taken", name)
	}
	want := int64(1)
	for _, d := range dims {
		want *= d
	}
	if want != int64(n) || slices.ContainsFunc(dims, func(d int64) bool { return d < 0 }) {
		return fmt.Errorf("onnx: weight %q: %d values do not fill shape %v", name, n, dims)
	}
	return nil
}

func (g *Graph) addInit(name string, dt TensorProto_DataType, dims []int64, raw []byte) {
	g.names[name], g.values[name] = true, true
	g.inits = append(g.inits, &TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(dt)),
		Dims: slices.Clone(dims), RawData: raw})
}

// Node adds a node with one output and returns the output's name: name
// itself, or name with a number appended when name is taken. Every input
// must already be a value of the graph.
func (g *Graph) Node(op, name string, inputs []string, attrs ...*AttributeProto) (string, error) {
	outs, err := g.NodeN(op, name, inputs, 1, attrs...)
	if err != nil {
		return "", err
	}
	return outs[0], nil
}

// NodeN adds a node with n outputs, named name:0 … name:n-1 (made unique as
// in Node).
func (g *Graph) NodeN(op, name string, inputs []string, n int, attrs ...*AttributeProto) ([]string, error) {
	for _, in := range inputs {
		if in != "" && !g.values[in] { // "" leaves an optional input out
			return nil, fmt.Errorf("onnx: %s node %q: no value %q", op, name, in)
		}
	}
	base := g.unique(name)
	outs := []string{base}
	if n != 1 {
		outs = outs[:0]
		for i := 0; i < n; i++ {
			outs = append(outs, base+":"+strconv.Itoa(i))
		}
	}
	for _, o := range outs {
		g.names[o], g.values[o] = true, true
		g.made[o] = len(g.nodes)
	}
	g.names[base] = true // the node's name, also when it is no value
	g.nodes = append(g.nodes, &NodeProto{Name: proto.String(base), OpType: proto.String(op),
		Input: slices.Clone(inputs), Output: outs, Attribute: attrs})
	return outs, nil
}

func (g *Graph) unique(name string) string {
	if !g.names[name] {
		return name
	}
	for i := 1; ; i++ {
		if n := name + "_" + strconv.Itoa(i); !g.names[n] {
			return n
		}
	}
}

// AttrInt is an integer attribute.
func AttrInt(name string, v int64) *AttributeProto {
	t := AttributeProto_INT
	return &AttributeProto{Name: proto.String(name), Type: &t, I: proto.Int64(v)}
}

// AttrInts is a list-of-integers attribute.
func AttrInts(name string, v ...int64) *AttributeProto {
	t := AttributeProto_INTS
	return &AttributeProto{Name: proto.String(name), Type: &t, Ints: slices.Clone(v)}
}

// AttrFloat is a float attribute.
func AttrFloat(name string, v float32) *AttributeProto {
	t := AttributeProto_FLOAT
	return &AttributeProto{Name: proto.String(name), Type: &t, F: proto.Float32(v)}
}

// ModelInfo is what a model file says about the graph it holds.
type ModelInfo struct {
	Producer, ProducerVersion string
	Doc                       string
	// Metadata becomes metadata_props, written in the keys' order.
	Metadata map[string]string
}

// Model wraps the graph in a model of IR version 8 importing opset 17.
func (g *Graph) Model(info ModelInfo) *ModelProto {
	m := &ModelProto{
		IrVersion:   proto.Int64(IRVersion),
		OpsetImport: []*OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(Opset)}},
		Graph: &GraphProto{Name: proto.String(g.name), Node: g.nodes, Initializer: g.inits,
			Input: g.inputs, Output: g.outputs},
	}
	if info.Producer != "" {
		m.ProducerName = proto.String(info.Producer)
	}
	if info.ProducerVersion != "" {
		m.ProducerVersion = proto.String(info.ProducerVersion)
	}
	if info.Doc != "" {
		m.DocString = proto.String(info.Doc)
	}
	keys := make([]string, 0, len(info.Metadata))
	for k := range info.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		m.MetadataProps = append(m.MetadataProps, &StringStringEntryProto{Key: proto.String(k), Value: proto.String(info.Metadata[k])})
	}
	return m
}

// Marshal encodes m, the same bytes for the same model every time.
func Marshal(m *ModelProto) ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// Unmarshal decodes a model file's bytes.
func Unmarshal(b []byte) (*ModelProto, error) {
	m := &ModelProto{}
	if err := proto.Unmarshal(b, m); err != nil {
		return nil, fmt.Errorf("onnx: %w", err)
	}
	return m, nil
}

// FloatData returns a float32 tensor's values, from raw_data or float_data.
func FloatData(t *TensorProto) ([]float32, error) {
	if t.GetDataType() != int32(TensorProto_FLOAT) {
		return nil, fmt.Errorf("onnx: tensor %q is not float32", t.GetName())
	}
	if t.RawData == nil {
		return t.FloatData, nil
	}
	if len(t.RawData)%4 != 0 {
		return nil, fmt.Errorf("onnx: tensor %q: %d raw bytes", t.GetName(), len(t.RawData))
	}
	out := make([]float32, len(t.RawData)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(t.RawData[4*i:]))
	}
	return out, nil
}
