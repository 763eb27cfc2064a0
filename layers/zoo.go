package layers

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"

	"github.com/kiln-ml/kiln/engine"
)

// Spec describes the data a model is built for and the head it ends in.
type Spec struct {
	Channels, Height, Width int // input image, e.g. 1×28×28 or 3×32×32
	Classes                 int // outputs of a classification head
	// Regression swaps the classification head for one output trained with
	// MSE (Classes is then ignored).
	Regression bool
	// Hidden and Depth resize a model where it has such knobs (mlp widths,
	// gmlp width and block count); zero keeps the defaults.
	Hidden, Depth int
	// Dropout is the cnn's dropout probability before its head (zero keeps
	// the default 0.3); the other models have no dropout.
	Dropout float64
	Seed    uint64 // initialisation seed
}

// Outputs is the width of the head.
func (s Spec) Outputs() int {
	if s.Regression {
		return 1
	}
	return s.Classes
}

type builder func(rng *rand.Rand, s Spec) (*Sequential, error)

var zoo = map[string]builder{
	"lenet":     buildLeNet,
	"mlp":       buildMLP,
	"cnn":       buildCNN,
	"inception": buildInception,
	"cbam":      buildCBAM,
	"gmlp":      buildGMLP,
}

// knobs are the zoo models that honour each size setting of a Spec.
var knobs = []struct {
	name   string
	models []string
	set    func(Spec) bool
}{
	{"hidden", []string{"cnn", "gmlp", "mlp"}, func(s Spec) bool { return s.Hidden != 0 }}, // mlp widths, cnn's fc width, gmlp width
	{"depth", []string{"gmlp", "mlp"}, func(s Spec) bool { return s.Depth != 0 }},          // mlp hidden layers (with hidden), gmlp blocks
	{"dropout", []string{"cnn"}, func(s Spec) bool { return s.Dropout != 0 }},              // cnn's dropout before the head
}

// CheckKnobs refuses a size setting (hidden, depth, dropout) that model
// does not have, and mlp's depth without its width: each would be kept in
// a run's records while the model was built without it. Errors are
// *KnobError.
func CheckKnobs(model string, s Spec) error {
	if inert := InertKnobs(model, s); len(inert) > 0 {
		return inert[0]
	}
	return nil
}

// InertKnobs are all of s's size settings that model would not read.
func InertKnobs(model string, s Spec) []*KnobError {
	var out []*KnobError
	for _, k := range knobs {
		if k.set(s) && !slices.Contains(k.models, model) {
			out = append(out, &KnobError{k.name, fmt.Sprintf("model %s has no such setting (models with it: %s)", model, strings.Join(k.models, ", "))})
		}
	}
	if model == "mlp" && s.Depth != 0 && s.Hidden == 0 {
		out = append(out, &KnobError{"depth", "mlp takes depth only with hidden (its default widths are 256, 128)"})
	}
	return out
}

// KnobError is a size setting a model does not take.
type KnobError struct{ Knob, Problem string }

func (e *KnobError) Error() string { return e.Knob + ": " + e.Problem }

// ModelNames lists the models Build knows, sorted.
func ModelNames() []string {
	names := make([]string, 0, len(zoo))
	for n := range zoo {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Model is a network of the zoo with the input shape it was built for.
type Model struct {
	*Sequential
	Name string
	Spec Spec
}

// Forward checks that x is (N, C, H, W) as the model expects, then runs it.
func (m *Model) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	s := m.Spec
	if x.Rank() != 4 || x.Dim(0) < 1 || x.Dim(1) != s.Channels || x.Dim(2) != s.Height || x.Dim(3) != s.Width {
		return nil, &engine.ShapeError{Op: "model " + m.Name,
			Msg:    fmt.Sprintf("expects input (N,%d,%d,%d) with N ≥ 1", s.Channels, s.Height, s.Width),
			Shapes: []string{"x=" + fmt.Sprint(x.Shape())}}
	}
	return m.Sequential.Forward(x)
}

// Build makes a model of the zoo by name, initialised from s.Seed. Its first
// layer skips the input gradient, which no one needs.
func Build(name string, s Spec) (*Model, error) {
	if err := checkSpec(name, s); err != nil {
		return nil, err
	}
	m, err := zoo[strings.ToLower(name)](rand.New(rand.NewPCG(s.Seed, 0x6b696c6e)), s)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", name, err)
	}
	m.SkipInputGrad(true)
	return &Model{Sequential: m, Name: strings.ToLower(name), Spec: s}, nil
}

// checkSpec is what every model of the zoo asks of its name and input.
func checkSpec(name string, s Spec) error {
	if _, ok := zoo[strings.ToLower(name)]; !ok {
		return fmt.Errorf("unknown model %q (have %s)", name, strings.Join(ModelNames(), ", "))
	}
	if s.Channels < 1 || s.Height < 1 || s.Width < 1 {
		return fmt.Errorf("model %s: bad input shape %dx%dx%d", name, s.Height, s.Width, s.Channels)
	}
	if s.Outputs() < 1 {
		return fmt.Errorf("model %s: need at least one output class", name)
	}
	return nil
}

// pooled is a size after n 2×2 max-pools (floor, as PyTorch).
func pooled(size, n int) int {
	for ; n > 0; n-- {
		size /= 2
	}
	return size
}

// buildLeNet is LeNet-5 exactly: conv 5×5 pad 2 → 6, ReLU, max-pool 2,
// conv 5×5 → 16, ReLU, max-pool 2, linear 400 → 120 → 84 → classes with ReLU.
// Names conv1, conv2, fc1, fc2, fc3 match the usual PyTorch definition.
func buildLeNet(rng *rand.Rand, s Spec) (*Sequential, error) {
	flat, err := lenetFlat(s)
	if err != nil {
		return nil, err
	}
	return (&Sequential{}).
		Append("conv1", NewConv2D(rng, s.Channels, 6, 5, ConvOptions{Padding: 2})).
		Append("relu1", NewReLU()).
		Append("pool1", NewMaxPool2D(2, 2, 0)).
		Append("conv2", NewConv2D(rng, 6, 16, 5, ConvOptions{})).
		Append("relu2", NewReLU()).
		Append("pool2", NewMaxPool2D(2, 2, 0)).
		Append("flatten", &Flatten{}).
		Append("fc1", NewLinear(rng, flat, 120, true)).
		Append("relu3", NewReLU()).
		Append("fc2", NewLinear(rng, 120, 84, true)).
		Append("relu4", NewReLU()).
		Append("fc3", NewLinear(rng, 84, s.Outputs(), true)), nil
}

// lenetFlat is the width of LeNet's flattened features, 16 maps after two
// 5×5 convolutions (the first padded) and two 2×2 pools.
func lenetFlat(s Spec) (int, error) {
	h, w := (s.Height)/2-4, (s.Width)/2-4 // after pool, the unpadded 5×5 conv
	if h < 2 || w < 2 {
		return 0, fmt.Errorf("input %dx%d too small for LeNet", s.Height, s.Width)
	}
	return 16 * (h / 2) * (w / 2), nil
}

// mlpWidths are the hidden widths: 256, 128 by default; Hidden alone makes
// two layers of that width, Depth with it makes Depth of them.
func mlpWidths(s Spec) (width, depth int, defaults bool) {
	switch {
	case s.Hidden <= 0:
		return 0, 2, true
	case s.Depth > 0:
		return s.Hidden, s.Depth, false
	}
	return s.Hidden, 2, false
}

// buildMLP: flatten, then hidden layers (default 256, 128) with ReLU.
func buildMLP(rng *rand.Rand, s Spec) (*Sequential, error) {
	widths := []int{256, 128}
	if w, d, def := mlpWidths(s); !def {
		widths = widths[:0]
		for i := 0; i < d; i++ {
			widths = append(widths, w)
		}
	}
	m := (&Sequential{}).Append("flatten", &Flatten{})
	in := s.Channels * s.Height * s.Width
	for i, wd := range widths {
		m.Append(fmt.Sprintf("fc%d", i+1), NewLinear(rng, in, wd, true))
		m.Append(fmt.Sprintf("relu%d", i+1), NewReLU())
		in = wd
	}
	return m.Append(fmt.Sprintf("fc%d", len(widths)+1), NewLinear(rng, in, s.Outputs(), true)), nil
}

// buildCNN: two stages of two 3×3 conv+BN+ReLU (32 then 64 channels), each
// ending in a 2×2 max-pool, then linear 128, ReLU, dropout 0.3, the head.
func buildCNN(rng *rand.Rand, s Spec) (*Sequential, error) {
	hidden, err := cnnHidden(s)
	if err != nil {
		return nil, err
	}
	m := &Sequential{}
	in := s.Channels
	for i, c := range cnnChannels {
		n := fmt.Sprint(i + 1)
		m.Append("conv"+n, NewConv2D(rng, in, c, 3, ConvOptions{Padding: 1, NoBias: true}))
		m.Append("bn"+n, NewBatchNorm2D(c))
		m.Append("relu"+n, NewReLU())
		if i%2 == 1 {
			m.Append("pool"+fmt.Sprint(i/2+1), NewMaxPool2D(2, 2, 0))
		}
		in = c
	}
	flat := 64 * pooled(s.Height, 2) * pooled(s.Width, 2)
	return m.Append("flatten", &Flatten{}).
		Append("fc1", NewLinear(rng, flat, hidden, true)).
		Append("relu5", NewReLU()).
		Append("dropout", NewDropout(cmp.Or(s.Dropout, 0.3), s.Seed^0xd50)).
		Append("fc2", NewLinear(rng, hidden, s.Outputs(), true)), nil
}

// cnnChannels are the cnn's four convolutions' widths.
var cnnChannels = [4]int{32, 32, 64, 64}

// cnnHidden checks the cnn's input and returns the width of its hidden
// linear layer.
func cnnHidden(s Spec) (int, error) {
	if s.Height < 4 || s.Width < 4 {
		return 0, fmt.Errorf("input %dx%d too small", s.Height, s.Width)
	}
	if s.Hidden > 0 {
		return s.Hidden, nil
	}
	return 128, nil
}

// buildInception: a 3×3 conv+BN+ReLU stem (32), max-pool, two Inception
// modules (56 then 112 channels), max-pool, global average pool, linear head.
var (
	inceptionModule1 = InceptionConfig{Out1x1: 16, Reduce3x3: 16, Out3x3: 24, Reduce5x5: 4, Out5x5: 8, PoolProj: 8}
	inceptionModule2 = InceptionConfig{Out1x1: 32, Reduce3x3: 24, Out3x3: 48, Reduce5x5: 8, Out5x5: 16, PoolProj: 16}
	cbamModule       = InceptionConfig{Out1x1: 16, Reduce3x3: 16, Out3x3: 32, Reduce5x5: 8, Out5x5: 8, PoolProj: 8}
)

// twoPools checks an input for a model with two 2×2 max-pools of stride 2
// and no padding (inception, cbam): at least 4×4.
func twoPools(s Spec, model string) error {
	if s.Height < 4 || s.Width < 4 {
		return fmt.Errorf("input %dx%d too small for %s (two 2×2 pools: at least 4x4)", s.Height, s.Width, model)
	}
	return nil
}

func buildInception(rng *rand.Rand, s Spec) (*Sequential, error) {
	if err := twoPools(s, "inception"); err != nil {
		return nil, err
	}
	i1, i2 := inceptionModule1, inceptionModule2
	return (&Sequential{}).
		Append("stem", NewConvBNReLU(rng, s.Channels, 32, 3, ConvOptions{Padding: 1})).
		Append("pool1", NewMaxPool2D(2, 2, 0)).
		Append("inception1", NewInception(rng, 32, i1)).
		Append("inception2", NewInception(rng, i1.OutChannels(), i2)).
		Append("pool2", NewMaxPool2D(2, 2, 0)).
		Append("gap", &GlobalAvgPool{}).
		Append("fc", NewLinear(rng, i2.OutChannels(), s.Outputs(), true)), nil
}

// buildCBAM: a conv stem with CBAM attention, max-pool, one Inception module,
// a conv+BN+ReLU with CBAM again, max-pool, global average pool, linear head.
func buildCBAM(rng *rand.Rand, s Spec) (*Sequential, error) {
	if err := twoPools(s, "cbam"); err != nil {
		return nil, err
	}
	inc := cbamModule
	return (&Sequential{}).
		Append("stem", NewConvBNReLU(rng, s.Channels, 32, 3, ConvOptions{Padding: 1})).
		Append("cbam1", NewCBAM(rng, 32, 8)).
		Append("pool1", NewMaxPool2D(2, 2, 0)).
		Append("inception", NewInception(rng, 32, inc)).
		Append("conv", NewConvBNReLU(rng, inc.OutChannels(), 64, 3, ConvOptions{Padding: 1})).
		Append("cbam2", NewCBAM(rng, 64, 8)).
		Append("pool2", NewMaxPool2D(2, 2, 0)).
		Append("gap", &GlobalAvgPool{}).
		Append("fc", NewLinear(rng, 64, s.Outputs(), true)), nil
}

// buildGMLP: 4×4 patches embedded to width 128, four gMLP blocks (ffn 256),
// LayerNorm, mean over tokens, linear head. Hidden and Depth override width
// and block count.
func buildGMLP(rng *rand.Rand, s Spec) (*Sequential, error) {
	width, depth, tokens, err := gmlpShape(s)
	if err != nil {
		return nil, err
	}
	blocks := &Sequential{}
	for i := 0; i < depth; i++ {
		blocks.Append(fmt.Sprint(i), NewGMLPBlock(rng, tokens, width, 2*width))
	}
	return (&Sequential{}).
		Append("patch", NewPatchEmbed(rng, s.Channels, gmlpPatch, width)).
		Append("blocks", blocks).
		Append("norm", NewLayerNorm(width)).
		Append("pool", &TokenMean{}).
		Append("head", NewLinear(rng, width, s.Outputs(), true)), nil
}

// gmlpPatch is the side of gmlp's square patches.
const gmlpPatch = 4

// gmlpShape checks gmlp's input and returns its width, block count and
// token count.
func gmlpShape(s Spec) (width, depth, tokens int, err error) {
	const patch = gmlpPatch
	width, depth = 128, 4
	if s.Hidden > 0 {
		width = s.Hidden
	}
	if s.Depth > 0 {
		depth = s.Depth
	}
	if s.Height%patch != 0 || s.Width%patch != 0 {
		return 0, 0, 0, fmt.Errorf("input %dx%d is not a multiple of the %d×%d patch", s.Height, s.Width, patch, patch)
	}
	return width, depth, (s.Height / patch) * (s.Width / patch), nil
}
