package engine_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/internal/gradcheck"
)

func TestGradientChannelPool(t *testing.T) {
	for _, s := range [][4]int{{1, 1, 3, 2}, {2, 5, 3, 4}, {3, 9, 1, 5}} {
		n, c, h, w := s[0], s[1], s[2], s[3]
		x := engine.New(engine.Float64, n, c, h, w)
		rng := rand.New(rand.NewPCG(uint64(c), 1))
		for i, j := range rng.Perm(x.Len()) { // distinct values: no ties for the max
			x.Float64()[i] = float64(j)*0.01 - 0.3
		}
		out := engine.New(engine.Float64, n, 2, h, w)
		dx := engine.New(engine.Float64, n, c, h, w)
		am := make([]int32, n*h*w)
		gradcheck.Check(t, []*engine.Tensor{x},
			func() (*engine.Tensor, error) { return out, engine.ChannelPoolForward(out, am, x) },
			func(dy *engine.Tensor) ([]*engine.Tensor, error) {
				return []*engine.Tensor{dx}, engine.ChannelPoolBackward(dx, dy, am)
			}, gradcheck.Options{})
	}
	if err := engine.ChannelPoolForward(engine.New(engine.Float32, 1, 1, 2, 2), make([]int32, 4), engine.New(engine.Float32, 1, 3, 2, 2)); err == nil {
		t.Fatal("wrong output shape accepted")
	}
}

func TestGradientTranspose12(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	x := gradcheck.Rand(rng, -1, 1, 2, 37, 5)
	out := engine.New(engine.Float64, 2, 5, 37)
	dx := engine.New(engine.Float64, 2, 37, 5)
	gradcheck.Check(t, []*engine.Tensor{x},
		func() (*engine.Tensor, error) { return out, engine.Transpose12(out, x) },
		func(dy *engine.Tensor) ([]*engine.Tensor, error) {
			return []*engine.Tensor{dx}, engine.Transpose12(dx, dy)
		}, gradcheck.Options{})
	if x.At(1*37*5+3*5+4) != out.At(1*5*37+4*37+3) {
		t.Fatal("transpose put an element in the wrong place")
	}
}

func TestGradientGlobalMaxPool(t *testing.T) {
	for _, s := range [][4]int{{1, 1, 1, 1}, {2, 3, 5, 7}, {3, 9, 4, 1}} {
		n, c, h, w := s[0], s[1], s[2], s[3]
		x := engine.New(engine.Float64, n, c, h, w)
		rng := rand.New(rand.NewPCG(uint64(h), 2))
		for i, j := range rng.Perm(x.Len()) {
			x.Float64()[i] = float64(j)*0.01 - 0.2
		}
		out := engine.New(engine.Float64, n, c)
		dx := engine.New(engine.Float64, n, c, h, w)
		am := make([]int32, n*c)
		gradcheck.Check(t, []*engine.Tensor{x},
			func() (*engine.Tensor, error) { return out, engine.GlobalMaxPoolForward(out, am, x) },
			func(dy *engine.Tensor) ([]*engine.Tensor, error) {
				return []*engine.Tensor{dx}, engine.GlobalMaxPoolBackward(dx, dy, am)
			}, gradcheck.Options{})
		// float32 picks the same winners.
		x32, out32 := x.As(engine.Float32), engine.New(engine.Float32, n, c)
		am32 := make([]int32, n*c)
		if err := engine.GlobalMaxPoolForward(out32, am32, x32); err != nil {
			t.Fatal(err)
		}
		for i := range am {
			if am[i] != am32[i] {
				t.Fatalf("plane %d: float32 picked %d, float64 %d", i, am32[i], am[i])
			}
		}
	}
	if err := engine.GlobalMaxPoolForward(engine.New(engine.Float32, 2, 3), make([]int32, 5), engine.New(engine.Float32, 2, 3, 2, 2)); err == nil {
		t.Fatal("short argmax accepted")
	}
}

// channelGateByParts is ChannelGateBackward as the ops it fuses: the
// broadcast multiply's dx, plus the average pooling's, plus the max pooling's.
func channelGateByParts(t *testing.T, dout, scale4, dAvg, dMax *engine.Tensor, am []int32) *engine.Tensor {
	t.Helper()
	dt, shape := dout.DType(), dout.Shape()
	dx, d1, dm := engine.New(dt, shape...), engine.New(dt, shape...), engine.New(dt, shape...)
	opsMust(t, engine.BroadcastMultiplyBackward(dx, nil, dout, dout, scale4))
	opsMust(t, engine.GlobalAvgPoolBackward(d1, dAvg))
	opsMust(t, engine.Add(dx, dx, d1))
	opsMust(t, engine.GlobalMaxPoolBackward(dm, dMax, am))
	opsMust(t, engine.Add(dx, dx, dm))
	return dx
}

// channelGateCase is a gradient, a scale, the poolings' gradients and
// argmaxes for shape s: random, with one plane whose every term is -0 (the
// max pooling's +0 elsewhere turns dx's -0 into +0) and a NaN.
func channelGateCase(t testing.TB, rng *rand.Rand, dt engine.DType, s [4]int) (dout, scale4, dAvg, dMax *engine.Tensor, am []int32) {
	n, c, hw := s[0], s[1], s[2]*s[3]
	dout, scale4 = randTensor(rng, dt, s[:]...), randTensor(rng, dt, n, c, 1, 1)
	dAvg, dMax = randTensor(rng, dt, n, c), randTensor(rng, dt, n, c)
	am = make([]int32, n*c)
	for p := range am {
		am[p] = int32(rng.IntN(hw))
	}
	negZero := math.Copysign(0, -1)
	for i := range hw {
		opsMust(t, dout.SetAt(i, negZero))
	}
	opsMust(t, dAvg.SetAt(0, negZero))
	if dout.Len() > hw {
		opsMust(t, dout.SetAt(hw, math.NaN()))
	}
	return dout, scale4, dAvg, dMax, am
}

// The fused pass gives the bits of the five ops it replaces, in both dtypes,
// on planes of one pixel and on batches big enough to be split over the
// workers, with dx written over dout too.
func TestChannelGateBackwardIsItsParts(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for _, dt := range []engine.DType{engine.Float32, engine.Float64} {
		for _, s := range [][4]int{{1, 1, 1, 1}, {2, 3, 7, 9}, {3, 5, 1, 1}, {1, 2, 5, 1}, {8, 32, 16, 16}} {
			dout, scale4, dAvg, dMax, am := channelGateCase(t, rng, dt, s)
			want := channelGateByParts(t, dout, scale4, dAvg, dMax, am)
			got := engine.New(dt, s[:]...)
			got.Fill(7)
			opsMust(t, engine.ChannelGateBackward(got, dout, scale4, dAvg, dMax, am))
			inPlace := dout.Clone()
			opsMust(t, engine.ChannelGateBackward(inPlace, inPlace, scale4, dAvg, dMax, am))
			for name, g := range map[string]*engine.Tensor{"dx": got, "dx over dout": inPlace} {
				if !sameTensorBits(g, want) {
					t.Errorf("%v %v %s: other bits than the ops it fuses", dt, s, name)
				}
			}
			if hw := s[2] * s[3]; hw > 1 && math.Signbit(got.At((int(am[0])+1)%hw)) { // off the argmax of plane 0
				t.Errorf("%v %v: a -0 sum stayed -0; the max pooling's +0 makes it +0", dt, s)
			}
		}
	}
	x := engine.New(engine.Float32, 2, 3, 2, 2)
	perPlane := engine.New(engine.Float32, 2, 3)
	for _, c := range []struct {
		name                  string
		dx, scale, dAvg, dMax *engine.Tensor
		am                    []int32
	}{
		{"dx not 4-D", engine.New(engine.Float32, 6, 4), perPlane, perPlane, perPlane, make([]int32, 6)},
		{"scale of 5", x, engine.New(engine.Float32, 5), perPlane, perPlane, make([]int32, 6)},
		{"argmax of 5", x, perPlane, perPlane, perPlane, make([]int32, 5)},
		{"argmax outside the plane", x, perPlane, perPlane, perPlane, []int32{0, 1, 2, 3, 4, 0}},
		{"float64 scale", x, engine.New(engine.Float64, 2, 3), perPlane, perPlane, make([]int32, 6)},
	} {
		if err := engine.ChannelGateBackward(c.dx, x, c.scale, c.dAvg, c.dMax, c.am); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}

// sameTensorBits: every element's bits alike, the sign of zero included;
// any NaN matches any NaN (a GPU gives its own payload).
func sameTensorBits(a, b *engine.Tensor) bool {
	if a.DType() == engine.Float64 {
		return slices.EqualFunc(a.Float64(), b.Float64(), func(x, y float64) bool {
			return math.Float64bits(x) == math.Float64bits(y) || x != x && y != y
		})
	}
	return slices.EqualFunc(a.Float32(), b.Float32(), func(x, y float32) bool {
		return math.Float32bits(x) == math.Float32bits(y) || x != x && y != y
	})
}

// spatialGateByParts is SpatialGateBackward as the ops it fuses: the
// broadcast multiply's dx plus the channel poolings'.
func spatialGateByParts(t *testing.T, dout, att, dPooled *engine.Tensor, am []int32) *engine.Tensor {
	t.Helper()
	dt, shape := dout.DType(), dout.Shape()
	dx, dp := engine.New(dt, shape...), engine.New(dt, shape...)
	opsMust(t, engine.BroadcastMultiplyBackward(dx, nil, dout, dout, att))
	opsMust(t, engine.ChannelPoolBackward(dp, dPooled, am))
	opsMust(t, engine.Add(dx, dx, dp))
	return dx
}

// spatialGateCase is a gradient, a map, the poolings' gradients and each
// pixel's max channel for shape s, random, with a NaN.
func spatialGateCase(t testing.TB, rng *rand.Rand, dt engine.DType, s [4]int) (dout, att, dPooled *engine.Tensor, am []int32) {
	n, c, h, w := s[0], s[1], s[2], s[3]
	dout, att, dPooled = randTensor(rng, dt, s[:]...), randTensor(rng, dt, n, 1, h, w), randTensor(rng, dt, n, 2, h, w)
	am = make([]int32, n*h*w)
	for p := range am {
		am[p] = int32(rng.IntN(c))
	}
	opsMust(t, dout.SetAt(dout.Len()-1, math.NaN()))
	return dout, att, dPooled, am
}

// The fused pass gives the bits of the three ops it replaces, in both
// dtypes, one channel or one pixel included, with dx written over dout too.
func TestSpatialGateBackwardIsItsParts(t *testing.T) {
	rng := rand.New(rand.NewPCG(35, 36))
	for _, dt := range []engine.DType{engine.Float32, engine.Float64} {
		for _, s := range [][4]int{{1, 1, 1, 1}, {2, 3, 7, 9}, {3, 5, 1, 1}, {2, 1, 4, 4}, {8, 32, 16, 16}} {
			dout, att, dPooled, am := spatialGateCase(t, rng, dt, s)
			want := spatialGateByParts(t, dout, att, dPooled, am)
			got := engine.New(dt, s[:]...)
			got.Fill(7)
			opsMust(t, engine.SpatialGateBackward(got, dout, att, dPooled, am))
			inPlace := dout.Clone()
			opsMust(t, engine.SpatialGateBackward(inPlace, inPlace, att, dPooled, am))
			for name, g := range map[string]*engine.Tensor{"dx": got, "dx over dout": inPlace} {
				if !sameTensorBits(g, want) {
					t.Errorf("%v %v %s: other bits than the ops it fuses", dt, s, name)
				}
			}
		}
	}
	x := engine.New(engine.Float32, 2, 3, 2, 2)
	att, pooled := engine.New(engine.Float32, 2, 1, 2, 2), engine.New(engine.Float32, 2, 2, 2, 2)
	for _, c := range []struct {
		name             string
		dx, att, dPooled *engine.Tensor
		am               []int32
	}{
		{"dx not 4-D", engine.New(engine.Float32, 6, 4), att, pooled, make([]int32, 8)},
		{"map of 7", x, engine.New(engine.Float32, 7), pooled, make([]int32, 8)},
		{"pooled of 3 maps", x, att, engine.New(engine.Float32, 2, 3, 2, 2), make([]int32, 8)},
		{"argmax of 7", x, att, pooled, make([]int32, 7)},
		{"argmax outside the channels", x, att, pooled, []int32{0, 1, 2, 3, 0, 0, 0, 0}},
	} {
		if err := engine.SpatialGateBackward(c.dx, x, c.att, c.dPooled, c.am); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}
