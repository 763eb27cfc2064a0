package layers

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kiln-ml/kiln/engine"
)

// Backward before any Forward is an error from every layer, not a panic.
func TestBackwardBeforeForwardIsAnError(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	cases := []Layer{
		NewConv2D(rng, 2, 4, 3, ConvOptions{Padding: 1}), NewLinear(rng, 4, 4, true), NewBatchNorm2D(2),
		NewLayerNorm(4), NewMaxPool2D(2, 2, 0), NewAvgPool2D(2, 2, 0), NewReLU(), NewGELU(), NewSigmoid(),
		NewDropout(0.5, 1), &Flatten{}, &GlobalAvgPool{}, NewChannelAttention(rng, 8, 2), NewSpatialAttention(rng),
		NewCBAM(rng, 8, 2), NewSpatialGatingUnit(rng, 4, 4), NewGMLPBlock(rng, 4, 4, 8), NewPatchEmbed(rng, 1, 2, 4),
		NewConvBNReLU(rng, 2, 4, 3, ConvOptions{Padding: 1}), NewInception(rng, 4, inceptionModule1),
		NewResidual(NewLinear(rng, 4, 4, true)), NewSequential(NewLinear(rng, 4, 4, true), NewReLU()),
	}
	for _, l := range cases {
		t.Run(fmt.Sprintf("%T", l), func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("Backward before Forward panicked: %v", r)
				}
			}()
			if _, err := l.Backward(engine.New(engine.Float32, 2, 4)); err == nil {
				t.Error("Backward before Forward: no error")
			}
		})
	}
}

// A negative stride, dilation or group count is refused by Forward, as
// PyTorch refuses it, not read as the default 1.
func TestConvNegativeOptionsAreRefused(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	x := engine.New(engine.Float32, 1, 2, 6, 6)
	for _, o := range []ConvOptions{{Stride: -2}, {Dilation: -2}, {Groups: -2}} {
		if _, err := NewConv2D(rng, 2, 4, 3, o).Forward(x); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
	if _, err := NewConv2D(rng, 2, 4, 3, ConvOptions{}).Forward(x); err != nil {
		t.Errorf("zero options (the defaults): %v", err)
	}
}
