package layers

import (
	"fmt"
	"reflect"

	"github.com/kiln-ml/kiln/engine"
)

// Summary is a model's layer table, as Keras' summary() and torchinfo print
// it: each layer's output shape, parameters and forward FLOPs for one
// sample, and the totals. kiln summary prints it; model.json keeps it.
//
// FLOPs count a multiply-add as 2 (a convolution's or linear layer's MACs
// times 2) and a bias add as 1. Element-wise work is counted by a fixed cost
// per element: ReLU 1, sigmoid and tanh 4, GELU 8, batch norm 2 (evaluation:
// scale and shift), layer norm 8, a pooling window's every element 1, a
// residual add or an attention scaling 1. Copies, views and concatenations
// count 0. The figures are those of evaluation (dropout off); a training
// step costs about 3 times the forward FLOPs.
type Summary struct {
	Input  []int          `json:"input"` // one sample: (C, H, W)
	Layers []LayerSummary `json:"layers"`
	// Params are every scalar of the state_dict: Trainable ones (weights,
	// biases) and NonTrainable buffers (batch norms' running statistics).
	Params       int64 `json:"params"`
	Trainable    int64 `json:"trainable_params"`
	NonTrainable int64 `json:"non_trainable_params"`
	FLOPs        int64 `json:"flops"`
	// ActivationBytes are the bytes of one sample's layer outputs in a
	// forward pass (views and containers' outputs counted once).
	ActivationBytes int64 `json:"activation_bytes"`
}

// LayerSummary is one row. A layer made of others (Depth d) is followed by
// its children (Depth d+1); its Params and FLOPs include theirs.
type LayerSummary struct {
	Name   string `json:"name"`
	Type   string `json:"type"`
	Depth  int    `json:"depth"`
	Output []int  `json:"output"` // with the batch dimension, 1
	Params int64  `json:"params"`
	FLOPs  int64  `json:"flops"`
}

// Summarize runs m forward once on a zero batch of one sample in evaluation
// mode, for the output shapes, and counts each layer's parameters and FLOPs.
// m is left in training mode, as Build makes it; its buffers are sized for
// one sample until the next Forward.
func Summarize(m *Model) (*Summary, error) {
	_, params := Params(m)
	if len(params) == 0 {
		return nil, fmt.Errorf("summary of %s: no parameters", m.Name)
	}
	s := m.Spec
	x := engine.EnsureLike(nil, params[0].Value, 1, s.Channels, s.Height, s.Width)
	defer x.Release()
	if err := x.Zero(); err != nil {
		return nil, err
	}
	defer Evaluating(m)()
	if _, err := m.Forward(x); err != nil {
		return nil, fmt.Errorf("summary of %s: %w", m.Name, err)
	}
	sum := &Summary{Input: []int{s.Channels, s.Height, s.Width}}
	sum.FLOPs = sum.add("", m.Sequential, 0)
	sum.Layers[0].Name, sum.Layers[0].Type = m.Name, "Model"
	seen := map[*Param]bool{} // a shared (tied) parameter counts once, as CountParams
	m.Walk("", func(_ string, p *Param) {
		if seen[p] {
			return
		}
		seen[p] = true
		switch {
		case p.Internal:
		case p.Grad != nil:
			sum.Trainable += int64(p.Value.Len())
		default:
			sum.NonTrainable += int64(p.Value.Len())
		}
	})
	sum.Params = sum.Trainable + sum.NonTrainable
	return sum, nil
}

// add appends the rows of l and its children and returns l's FLOPs, its
// children's included. A child named "" (a residual's body) shares its
// parent's name, so it gets no row of its own: its children become the
// parent's.
func (s *Summary) add(name string, l Layer, depth int) int64 {
	row := len(s.Layers)
	s.Layers = append(s.Layers, LayerSummary{Name: name, Type: layerType(l), Depth: depth,
		Output: shapeOf(layerOutput(l)), Params: int64(CountParams(l))})
	flops := s.addChildren(name, l, depth)
	s.Layers[row].FLOPs = flops
	return flops
}

// addChildren adds the rows under l and returns l's FLOPs.
func (s *Summary) addChildren(name string, l Layer, depth int) int64 {
	flops := ownFLOPs(l)
	if _, ok := l.(*Sequential); !ok && l != nil {
		if _, view := l.(*Flatten); !view {
			if out := layerOutput(l); out != nil {
				s.ActivationBytes += int64(out.Len() * out.DType().Size())
			}
		}
	}
	p, ok := l.(Parent)
	if !ok {
		return flops
	}
	p.Children(func(child string, c Layer) {
		if child == "" {
			flops += s.addChildren(name, c, depth)
			return
		}
		flops += s.add(join(name, child), c, depth+1)
	})
	return flops
}

func shapeOf(t *engine.Tensor) []int {
	if t == nil {
		return nil
	}
	return append([]int(nil), t.Shape()...)
}

// layerType is the row's type: the Go type, or the activation's name.
func layerType(l Layer) string {
	if a, ok := l.(*Act); ok {
		return a.Kind.String()
	}
	t := reflect.TypeOf(l)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}

// layerOutput is the output of l's last Forward (nil for a layer type this
// file does not know).
func layerOutput(l Layer) *engine.Tensor {
	switch l := l.(type) {
	case *Sequential:
		if len(l.layers) == 0 {
			return nil
		}
		return layerOutput(l.layers[len(l.layers)-1])
	case *Conv2D:
		return l.out
	case *Linear:
		return l.out
	case *TokenLinear:
		return l.out3
	case *BatchNorm2D:
		return l.out
	case *LayerNorm:
		return l.out
	case *MaxPool2D:
		return l.out
	case *AvgPool2D:
		return l.out
	case *GlobalAvgPool:
		return l.out
	case *Act:
		if l.pooled || l.fused {
			return l.x // not rectified, but the output's shape
		}
		return l.out
	case *Dropout:
		return l.out
	case *Flatten:
		return l.view
	}
	return blockOutput(l)
}

// blockOutput is layerOutput for the layers made of others.
func blockOutput(l Layer) *engine.Tensor {
	switch l := l.(type) {
	case *Residual:
		return l.out
	case *Inception:
		return l.out
	case *ChannelAttention:
		return l.out
	case *SpatialAttention:
		return l.out
	case *SpatialGatingUnit:
		return l.out
	case *GMLPBlock:
		return l.residual.out
	case *PatchEmbed:
		return l.tokens
	case *TokenMean:
		return l.gap.out
	}
	return nil
}

// Per-element costs of the element-wise work (see Summary).
const (
	flopsReLU      = 1
	flopsSigmoid   = 4
	flopsGELU      = 8
	flopsBatchNorm = 2
	flopsLayerNorm = 8
)

// ownFLOPs is the forward FLOPs of l's own work, its children's left out.
func ownFLOPs(l Layer) int64 {
	out := layerOutput(l)
	if out == nil {
		return 0
	}
	n := int64(out.Len())
	switch l := l.(type) {
	case *Conv2D:
		w := l.Weight.Value // (Cout, Cin/groups, kh, kw)
		return 2*n*int64(w.Len()/w.Dim(0)) + biasFLOPs(l.Bias, n)
	case *Linear:
		return linearFLOPs(l, n)
	case *TokenLinear:
		return linearFLOPs(l.Linear, n)
	case *BatchNorm2D:
		return flopsBatchNorm * n
	case *LayerNorm:
		return flopsLayerNorm * n
	case *MaxPool2D:
		return n * int64(l.P.KernelH*l.P.KernelW)
	case *AvgPool2D:
		return n * int64(l.P.KernelH*l.P.KernelW)
	case *GlobalAvgPool:
		return int64(numel(l.inShape))
	case *TokenMean:
		return int64(numel(l.gap.inShape))
	case *Act:
		return actFLOPs(l.Kind) * n
	case *Residual, *GMLPBlock:
		return n
	}
	return attentionFLOPs(l, n)
}

// attentionFLOPs is ownFLOPs of the attention and gating blocks, whose
// output of n elements has their input's shape (the SGU: half its width).
func attentionFLOPs(l Layer, n int64) int64 {
	switch l := l.(type) {
	case *ChannelAttention:
		// Average and max pools over the planes, ReLU on the hidden layer
		// of both descriptors, their sum, the sigmoid, the scaling.
		nc := int64(l.x.Dim(0) * l.x.Dim(1))
		hidden := int64(2 * l.x.Dim(0) * l.FC1.Weight.Value.Dim(0))
		return 2*n + flopsReLU*hidden + nc + flopsSigmoid*nc + n
	case *SpatialAttention:
		// Channel mean and max per pixel, the sigmoid of the map, the scaling.
		return 2*n + flopsSigmoid*int64(l.att.Len()) + n
	case *SpatialGatingUnit:
		// Layer norm of the gate half, the T×T token mix and its bias, the
		// gating product: out is (N, T, D).
		t := int64(l.out.Dim(1))
		return flopsLayerNorm*n + 2*t*n + n + n
	}
	return 0
}

func linearFLOPs(l *Linear, n int64) int64 {
	in := int64(l.Weight.Value.Dim(1)) // weight (out, in)
	return 2*n*in + biasFLOPs(l.Bias, n)
}

func biasFLOPs(b *Param, n int64) int64 {
	if b == nil {
		return 0
	}
	return n
}

func actFLOPs(k engine.Activation) int64 {
	switch k {
	case engine.ReLU:
		return flopsReLU
	case engine.GELU:
		return flopsGELU
	}
	return flopsSigmoid // sigmoid, tanh
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}
