package engine

import (
	"fmt"

	"github.com/kiln-ml/kiln/cuda"
)

// The GPU side of pool.go: kernels/pool.cu.

// poolArgs packs the geometry every 2-D pooling kernel takes after its
// pointers and element count.
func poolArgs(a *cuda.Args, g *poolGeom) *cuda.Args {
	return a.Int(g.h).Int(g.w).Int(g.oh).Int(g.ow).Int(g.kh).Int(g.kw).Int(g.sh).Int(g.sw).Int(g.ph).Int(g.pw)
}

// rowsOf4 says whether a 2-D pooling runs the 2×2 kernels that move four
// floats of a row at a time (kernels/pool.cu): 2×2 windows with stride 2 and
// no padding, rows of a multiple of 4, and the input (forward) or its
// gradient (backward) 16-byte aligned.
func rowsOf4(g *poolGeom, t *Tensor) bool {
	return g.pairs && g.w%4 == 0 && g.oh > 0 && t.dptr()%16 == 0
}

// maxPool2DForwardCUDA is MaxPool2DForward on the GPU, and with relu
// MaxPool2DReLUForward (op names which).
func maxPool2DForwardCUDA(op string, relu bool, out *Tensor, argmax []int32, x *Tensor, p Pool2DParams, g *poolGeom) error {
	return runCUDA(op, func() error {
		total := out.Len()
		if total == 0 {
			return nil
		}
		var am cuda.Ptr
		if argmax != nil {
			var err error
			if am, err = indicesOnDevice(argmax); err != nil {
				return err
			}
		}
		var a cuda.Args
		a.Ptr(out.dptr()).Ptr(am).Ptr(x.dptr())
		if rowsOf4(g, x) {
			a.I64(int64(total / 2)).Int(g.h).Int(g.w).Int(g.oh).Int(g.ow).Bool(relu)
			return launchFit(kern.maxpool2x2_forward_f32, total/2, &a)
		}
		a.I64(int64(total))
		return launchFit(kern.maxpool2d_forward_f32, total, poolArgs(&a, g).Bool(relu))
	}, func(host hostCopy) error {
		var cpu []int32
		if argmax != nil {
			cpu = make([]int32, len(argmax))
		}
		if err := maxPoolForward(op, relu, host(out), cpu, host(x), p); err != nil {
			return err
		}
		if argmax == nil {
			return nil
		}
		return sameIndices(op, argmax, cpu)
	}, out, x)
}

// poolWindowCheck accepts host argmax indices only inside their own window:
// the gather backward looks for each input in the windows that hold it.
func poolWindowCheck(op string, g *poolGeom) func([]int32) error {
	return func(idx []int32) error {
		on := g.oh * g.ow
		for i, a := range idx {
			o := i % on
			h0, h1 := window(o/g.ow, g.sh, g.ph, g.kh, g.h)
			w0, w1 := window(o%g.ow, g.sw, g.pw, g.kw, g.w)
			ih, iw := int(a)/g.w, int(a)%g.w
			if a < 0 || ih < h0 || ih >= h1 || iw < w0 || iw >= w1 {
				return &ShapeError{Op: op, Msg: fmt.Sprintf("argmax[%d] = %d is not inside its window", i, a)}
			}
		}
		return nil
	}
}

// maxPool2DBackwardCUDA is MaxPool2DBackward on the GPU, and given keep (the
// fused forward's out) MaxPool2DReLUBackward (op names which).
func maxPool2DBackwardCUDA(op string, dx, dout, keep *Tensor, argmax []int32, p Pool2DParams, g *poolGeom) error {
	return runCUDA(op, func() error {
		total := dx.Len()
		if total == 0 {
			return nil
		}
		am, done, err := indicesForBackward(argmax, poolWindowCheck(op, g))
		if err != nil {
			return err
		}
		defer done()
		var kp cuda.Ptr
		if keep != nil {
			kp = keep.dptr()
		}
		var a cuda.Args
		a.Ptr(dx.dptr()).Ptr(dout.dptr()).Ptr(am)
		if rowsOf4(g, dx) {
			pairs := dout.Len() / 2
			a.I64(int64(pairs)).Int(g.h).Int(g.w).Int(g.oh).Int(g.ow).Ptr(kp)
			return launchFit(kern.maxpool2x2_backward_f32, pairs, &a)
		}
		a.I64(int64(total))
		return launchFit(kern.maxpool2d_backward_f32, total, poolArgs(&a, g).Ptr(kp))
	}, func(host hostCopy) error {
		idx, err := hostIndices(argmax)
		if err != nil {
			return err
		}
		return maxPoolBackward(op, host(dx), host(dout), host(keep), idx, p)
	}, dx, dout, keep)
}

func avgPool2DForwardCUDA(out, x *Tensor, p Pool2DParams, g *poolGeom) error {
	return runCUDA("AvgPool2DForward", func() error {
		total := out.Len()
		var a cuda.Args
		a.Ptr(out.dptr()).Ptr(x.dptr())
		if rowsOf4(g, x) {
			a.I64(int64(total / 2)).Int(g.h).Int(g.w).Int(g.oh).Int(g.ow)
			return launchFit(kern.avgpool2x2_forward_f32, total/2, &a)
		}
		a.I64(int64(total))
		return launchFit(kern.avgpool2d_forward_f32, total, poolArgs(&a, g))
	}, func(host hostCopy) error { return AvgPool2DForward(host(out), host(x), p) }, out, x)
}

func avgPool2DBackwardCUDA(dx, dout *Tensor, p Pool2DParams, g *poolGeom) error {
	return runCUDA("AvgPool2DBackward", func() error {
		total := dx.Len()
		var a cuda.Args
		a.Ptr(dx.dptr()).Ptr(dout.dptr())
		if rowsOf4(g, dx) {
			pairs := dout.Len() / 2
			a.I64(int64(pairs)).Int(g.h).Int(g.w).Int(g.oh).Int(g.ow)
			return launchFit(kern.avgpool2x2_backward_f32, pairs, &a)
		}
		a.I64(int64(total))
		return launchFit(kern.avgpool2d_backward_f32, total, poolArgs(&a, g))
	}, func(host hostCopy) error { return AvgPool2DBackward(host(dx), host(dout), p) }, dx, dout)
}

// planeBlock is the block size of the one-block-per-plane reductions: the
// plane rounded up to whole warps, at most 256 threads.
func planeBlock(hw int) int {
	return min(256, max(32, (hw+31)/32*32))
}

// planeGrid caps the number of plane blocks; the kernels loop beyond.
const planeGridMax = 1 << 16

func globalAvgPoolForwardCUDA(out, x *Tensor, g *poolGeom) error {
	return runCUDA("GlobalAvgPoolForward", func() error {
		hw := g.h * g.w
		var a cuda.Args
		return cuda.Launch(kern.global_avgpool_forward_f32, cuda.D1(min(g.planes, planeGridMax)), cuda.D1(planeBlock(hw)), 0,
			a.Ptr(out.dptr()).Ptr(x.dptr()).Int(g.planes).Int(hw))
	}, func(host hostCopy) error { return GlobalAvgPoolForward(host(out), host(x)) }, out, x)
}

func globalAvgPoolBackwardCUDA(dx, dout *Tensor, g *poolGeom) error {
	return runCUDA("GlobalAvgPoolBackward", func() error {
		total := dx.Len()
		var a cuda.Args
		return launchFit(kern.global_avgpool_backward_f32, total, a.Ptr(dx.dptr()).Ptr(dout.dptr()).I64(int64(total)).Int(g.h*g.w))
	}, func(host hostCopy) error { return GlobalAvgPoolBackward(host(dx), host(dout)) }, dx, dout)
}
