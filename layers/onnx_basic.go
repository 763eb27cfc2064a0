package layers

import (
	"fmt"
	"math"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/onnx"
)

// The ONNX nodes of the single-op layers: activations, convolution, linear,
// normalisation and pooling.

func (e *onnxEmitter) act(prefix string, a *Act, x string) (string, error) {
	name := nodeName(prefix, a.Kind.String())
	switch a.Kind {
	case engine.ReLU:
		return e.g.Node("Relu", name, []string{x})
	case engine.Sigmoid:
		return e.g.Node("Sigmoid", name, []string{x})
	case engine.Tanh:
		return e.g.Node("Tanh", name, []string{x})
	case engine.GELU:
		return e.gelu(name, x)
	}
	return "", fmt.Errorf("layer %q: activation %v has no ONNX form", prefix, a.Kind)
}

// gelu is x·Φ(x) = x·(1 + erf(x/√2))/2, the exact form Kiln computes: opset
// 17 has no Gelu (it came in opset 20).
func (e *onnxEmitter) gelu(name, x string) (string, error) {
	c := &onnxChain{e: e}
	sqrt2, one, half := c.constFloat("const/sqrt2", math.Sqrt2), c.constFloat("const/one", 1), c.constFloat("const/half", 0.5)
	erf := c.node("Erf", name+"/erf", c.node("Div", name+"/div", x, sqrt2))
	y := c.node("Mul", name, c.node("Mul", name+"/mul", x, c.node("Add", name+"/add", erf, one)), half)
	return y, c.err
}

func (e *onnxEmitter) conv(prefix string, c *Conv2D, x string) (string, error) {
	in := []string{x}
	w, err := e.param(join(prefix, "weight"), c.Weight)
	if err != nil {
		return "", err
	}
	in = append(in, w)
	if c.Bias != nil {
		b, err := e.param(join(prefix, "bias"), c.Bias)
		if err != nil {
			return "", err
		}
		in = append(in, b)
	}
	p, ws := c.P, c.Weight.Value.Shape()
	one := func(v int) int64 { return int64(max(v, 1)) }
	return e.g.Node("Conv", nodeName(prefix, "conv"), in,
		onnx.AttrInts("kernel_shape", int64(ws[2]), int64(ws[3])),
		onnx.AttrInts("strides", one(p.StrideH), one(p.StrideW)),
		onnx.AttrInts("pads", int64(p.PadH), int64(p.PadW), int64(p.PadH), int64(p.PadW)),
		onnx.AttrInts("dilations", one(p.DilationH), one(p.DilationW)),
		onnx.AttrInt("group", one(p.Groups)))
}

// linearWeights adds a linear layer's weight and bias (when it has one).
func (e *onnxEmitter) linearWeights(prefix string, l *Linear) ([]string, error) {
	w, err := e.param(join(prefix, "weight"), l.Weight)
	if err != nil || l.Bias == nil {
		return []string{w}, err
	}
	b, err := e.param(join(prefix, "bias"), l.Bias)
	return []string{w, b}, err
}

// gemm is y = x·Wᵀ + b for x (N, in) with wb from linearWeights.
func (e *onnxEmitter) gemm(name, x string, wb []string) (string, error) {
	return e.g.Node("Gemm", name, append([]string{x}, wb...), onnx.AttrInt("transB", 1))
}

func (e *onnxEmitter) linear(prefix string, l *Linear, x string) (string, error) {
	wb, err := e.linearWeights(prefix, l)
	if err != nil {
		return "", err
	}
	return e.gemm(nodeName(prefix, "linear"), x, wb)
}

// tokenLinear applies the linear layer to every token of (N, T, D): MatMul
// with the transposed weight (Gemm takes only matrices), then the bias.
func (e *onnxEmitter) tokenLinear(prefix string, l *TokenLinear, x string) (string, error) {
	wb, err := e.linearWeights(prefix, l.Linear)
	if err != nil {
		return "", err
	}
	name := nodeName(prefix, "token_linear")
	wt, err := e.g.Node("Transpose", name+"/weight_t", wb[:1], onnx.AttrInts("perm", 1, 0))
	if err != nil {
		return "", err
	}
	if len(wb) == 1 {
		return e.g.Node("MatMul", name, []string{x, wt})
	}
	y, err := e.g.Node("MatMul", name+"/matmul", []string{x, wt})
	if err != nil {
		return "", err
	}
	return e.g.Node("Add", name, []string{y, wb[1]})
}

// batchNorm is BatchNormalization in inference mode: the running
// statistics, as Kiln's evaluation mode.
func (e *onnxEmitter) batchNorm(prefix string, b *BatchNorm2D, x string) (string, error) {
	in := []string{x}
	for _, p := range []struct {
		name string
		p    *Param
	}{{"weight", b.Weight}, {"bias", b.Bias}, {"running_mean", b.RunningMean}, {"running_var", b.RunningVar}} {
		v, err := e.param(join(prefix, p.name), p.p)
		if err != nil {
			return "", err
		}
		in = append(in, v)
	}
	return e.g.Node("BatchNormalization", nodeName(prefix, "batch_norm"), in,
		onnx.AttrFloat("epsilon", float32(b.Eps)), onnx.AttrFloat("momentum", float32(1-b.Momentum)))
}

func (e *onnxEmitter) layerNorm(prefix string, l *LayerNorm, x string) (string, error) {
	w, err := e.param(join(prefix, "weight"), l.Weight)
	if err != nil {
		return "", err
	}
	b, err := e.param(join(prefix, "bias"), l.Bias)
	if err != nil {
		return "", err
	}
	return e.g.Node("LayerNormalization", nodeName(prefix, "layer_norm"), []string{x, w, b},
		onnx.AttrInt("axis", -1), onnx.AttrFloat("epsilon", float32(l.Eps)))
}

// pool is MaxPool or AveragePool in floor mode, as Kiln's pools.
func (e *onnxEmitter) pool(op, prefix string, p engine.Pool2DParams, x string, extra ...*onnx.AttributeProto) (string, error) {
	sh, sw := p.StrideH, p.StrideW
	if sh == 0 {
		sh = p.KernelH
	}
	if sw == 0 {
		sw = p.KernelW
	}
	attrs := append([]*onnx.AttributeProto{
		onnx.AttrInts("kernel_shape", int64(p.KernelH), int64(p.KernelW)),
		onnx.AttrInts("strides", int64(sh), int64(sw)),
		onnx.AttrInts("pads", int64(p.PadH), int64(p.PadW), int64(p.PadH), int64(p.PadW)),
	}, extra...)
	return e.g.Node(op, nodeName(prefix, "pool"), []string{x}, attrs...)
}

// globalPool pools each plane to one value and flattens: (N,C,H,W) → (N,C).
func (e *onnxEmitter) globalPool(op, prefix string, x string) (string, error) {
	name := nodeName(prefix, "global_pool")
	p, err := e.g.Node(op, name+"/pool", []string{x})
	if err != nil {
		return "", err
	}
	return e.g.Node("Flatten", name, []string{p}, onnx.AttrInt("axis", 1))
}
