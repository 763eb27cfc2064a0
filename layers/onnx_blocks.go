package layers

import "github.com/kiln-ml/kiln/onnx"

// The ONNX nodes of the composite layers (CBAM's gates, Inception, gMLP's
// parts), written as the primitive ops Kiln's fused forward passes compute.

// channelAttention is x ⊙ σ(MLP(avg(x)) + MLP(max(x))) with the one MLP's
// weights shared by both descriptors. Kiln runs the MLP once on the two
// stacked (2N, C); row by row that is the same arithmetic.
func (e *onnxEmitter) channelAttention(prefix string, a *ChannelAttention, x string) (string, error) {
	name := nodeName(prefix, "channel_attention")
	w1, err := e.linearWeights(join(prefix, "fc1"), a.FC1)
	if err != nil {
		return "", err
	}
	w2, err := e.linearWeights(join(prefix, "fc2"), a.FC2)
	if err != nil {
		return "", err
	}
	c := &onnxChain{e: e}
	mlp := func(what, desc string) string {
		h := c.nodeAttrs("Gemm", name+"/"+what+"/fc1", append([]string{desc}, w1...), onnx.AttrInt("transB", 1))
		h = c.node("Relu", name+"/"+what+"/relu", h)
		return c.nodeAttrs("Gemm", name+"/"+what+"/fc2", append([]string{h}, w2...), onnx.AttrInt("transB", 1))
	}
	descriptor := func(op, what string) string {
		p := c.node(op, name+"/"+what+"/pool", x)
		return c.nodeAttrs("Flatten", name+"/"+what+"/flatten", []string{p}, onnx.AttrInt("axis", 1))
	}
	avg := mlp("avg", descriptor("GlobalAveragePool", "avg"))
	mx := mlp("max", descriptor("GlobalMaxPool", "max"))
	scale := c.node("Sigmoid", name+"/sigmoid", c.node("Add", name+"/sum", avg, mx))
	scale4 := c.node("Unsqueeze", name+"/unsqueeze", scale, c.constInts("const/axes_2_3", 2, 3))
	return c.node("Mul", name, x, scale4), c.err
}

// spatialAttention is x ⊙ σ(conv([mean_c(x); max_c(x)])).
func (e *onnxEmitter) spatialAttention(prefix string, s *SpatialAttention, x string) (string, error) {
	name := nodeName(prefix, "spatial_attention")
	c := &onnxChain{e: e}
	keep := []*onnx.AttributeProto{onnx.AttrInts("axes", 1), onnx.AttrInt("keepdims", 1)}
	mean := c.nodeAttrs("ReduceMean", name+"/mean", []string{x}, keep...)
	mx := c.nodeAttrs("ReduceMax", name+"/max", []string{x}, keep...)
	pooled := c.nodeAttrs("Concat", name+"/pooled", []string{mean, mx}, onnx.AttrInt("axis", 1))
	att := c.node("Sigmoid", name+"/sigmoid", c.layer(join(prefix, "conv"), s.Conv, pooled))
	return c.node("Mul", name, x, att), c.err
}

// inception concatenates its four branches along channels.
func (e *onnxEmitter) inception(prefix string, m *Inception, x string) (string, error) {
	c := &onnxChain{e: e}
	var outs []string
	m.Children(func(name string, b Layer) { outs = append(outs, c.layer(childName(prefix, name), b, x)) })
	return c.nodeAttrs("Concat", nodeName(prefix, "inception"), outs, onnx.AttrInt("axis", 1)), c.err
}

// spatialGating is gMLP's unit on z (N,T,2D): u ⊙ (W·LayerNorm(v) + b) with
// (u, v) the channel halves of z, W (T,T) mixing tokens and b (T) a bias per
// token.
func (e *onnxEmitter) spatialGating(prefix string, s *SpatialGatingUnit, z string) (string, error) {
	name := nodeName(prefix, "spatial_gating")
	c := &onnxChain{e: e}
	gamma, beta := c.param(join(prefix, "norm.weight"), s.NormWeight), c.param(join(prefix, "norm.bias"), s.NormBias)
	w, b := c.param(join(prefix, "proj.weight"), s.ProjWeight), c.param(join(prefix, "proj.bias"), s.ProjBias)
	if c.err != nil {
		return "", c.err
	}
	uv, err := e.g.NodeN("Split", name+"/split", []string{z}, 2, onnx.AttrInt("axis", 2))
	if err != nil {
		return "", err
	}
	vn := c.nodeAttrs("LayerNormalization", name+"/norm", []string{uv[1], gamma, beta},
		onnx.AttrInt("axis", -1), onnx.AttrFloat("epsilon", float32(s.Eps)))
	mixed := c.node("MatMul", name+"/mix", w, vn) // (T,T)·(N,T,D) broadcasts over N
	bias := c.node("Unsqueeze", name+"/bias", b, c.constInts("const/axes_1", 1))
	gate := c.node("Add", name+"/gate", mixed, bias)
	return c.node("Mul", name, uv[0], gate), c.err
}

// patchEmbed is the patch convolution, its map (N,D,h,w) flattened to
// (N,D,T) and transposed to tokens (N,T,D).
func (e *onnxEmitter) patchEmbed(prefix string, p *PatchEmbed, x string) (string, error) {
	name := nodeName(prefix, "patch_embed")
	c := &onnxChain{e: e}
	m := c.layer(join(prefix, "proj"), p.Proj, x)
	flat := c.node("Reshape", name+"/flatten", m, c.constInts("const/shape_0_0_-1", 0, 0, -1))
	return c.nodeAttrs("Transpose", name, []string{flat}, onnx.AttrInts("perm", 0, 2, 1)), c.err
}
