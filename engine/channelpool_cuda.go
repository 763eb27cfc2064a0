package engine

import "github.com/kiln-ml/kiln/cuda"

// The GPU side of channelpool.go: kernels/channelpool.cu. The argmax slices
// stay on the GPU as in pool_cuda.go.

// runIndexedBackward runs a backward op whose kernel reads a forward pass's
// indices (each in [0, n)): launch gets their device pointer and dx's length
// (never 0), cpu runs the op on the host copies with the host indices.
func runIndexedBackward(op string, dx *Tensor, argmax []int32, n int, launch func(am cuda.Ptr, total int) error,
	cpu func(host hostCopy, idx []int32) error, ts ...*Tensor) error {
	return runCUDA(op, func() error {
		am, done, err := indicesForBackward(argmax, indexRange(op, n)) // checked even for an empty dx
		if err != nil {
			return err
		}
		defer done()
		if dx.Len() == 0 {
			return nil
		}
		return launch(am, dx.Len())
	}, func(host hostCopy) error {
		idx, err := hostIndices(argmax)
		if err != nil {
			return err
		}
		return cpu(host, idx)
	}, ts...)
}

func channelPoolForwardCUDA(out *Tensor, argmax []int32, x *Tensor) error {
	const op = "ChannelPoolForward"
	n, c, hw := x.Dim(0), x.Dim(1), x.Dim(2)*x.Dim(3)
	return runCUDA(op, func() error {
		total := n * hw
		if total == 0 {
			return nil
		}
		am, err := indicesOnDevice(argmax)
		if err != nil {
			return err
		}
		var a cuda.Args
		return launchFit(kern.channelpool_forward_f32, total, a.Ptr(out.dptr()).Ptr(am).Ptr(x.dptr()).I64(int64(total)).
			Int(c).Int(hw).F32(1/float32(c)))
	}, func(host hostCopy) error {
		cpu := make([]int32, len(argmax))
		if err := ChannelPoolForward(host(out), cpu, host(x)); err != nil {
			return err
		}
		return sameIndices(op, argmax, cpu)
	}, out, x)
}

func channelPoolBackwardCUDA(dx, dout *Tensor, argmax []int32) error {
	c, hw := dx.Dim(1), dx.Dim(2)*dx.Dim(3)
	return runIndexedBackward("ChannelPoolBackward", dx, argmax, c, func(am cuda.Ptr, total int) error {
		var a cuda.Args
		return launchFit(kern.channelpool_backward_f32, total, a.Ptr(dx.dptr()).Ptr(dout.dptr()).Ptr(am).I64(int64(total)).
			Int(c).Int(hw).F32(1/float32(c)))
	}, func(host hostCopy, idx []int32) error {
		return ChannelPoolBackward(host(dx), host(dout), idx)
	}, dx, dout)
}

func globalMaxPoolForwardCUDA(out *Tensor, argmax []int32, x *Tensor) error {
	const op = "GlobalMaxPoolForward"
	planes, hw := out.Len(), x.Dim(2)*x.Dim(3)
	return runCUDA(op, func() error {
		if planes == 0 {
			return nil
		}
		am, err := indicesOnDevice(argmax)
		if err != nil {
			return err
		}
		var a cuda.Args
		return cuda.Launch(kern.global_maxpool_forward_f32, cuda.D1(min(planes, planeGridMax)), cuda.D1(planeBlock(hw)), 0,
			a.Ptr(out.dptr()).Ptr(am).Ptr(x.dptr()).Int(planes).Int(hw))
	}, func(host hostCopy) error {
		cpu := make([]int32, len(argmax))
		if err := GlobalMaxPoolForward(host(out), cpu, host(x)); err != nil {
			return err
		}
		return sameIndices(op, argmax, cpu)
	}, out, x)
}

func globalMaxPoolBackwardCUDA(dx, dout *Tensor, argmax []int32) error {
	hw := dx.Dim(2) * dx.Dim(3)
	return runIndexedBackward("GlobalMaxPoolBackward", dx, argmax, hw, func(am cuda.Ptr, total int) error {
		var a cuda.Args
		return launchFit(kern.global_maxpool_backward_f32, total, a.Ptr(dx.dptr()).Ptr(dout.dptr()).Ptr(am).I64(int64(total)).Int(hw))
	}, func(host hostCopy, idx []int32) error {
		return GlobalMaxPoolBackward(host(dx), host(dout), idx)
	}, dx, dout)
}

func channelGateBackwardCUDA(dx, dout, scale, dAvg, dMax *Tensor, argmax []int32) error {
	hw := dx.Dim(2) * dx.Dim(3)
	return runIndexedBackward("ChannelGateBackward", dx, argmax, hw, func(am cuda.Ptr, total int) error {
		var a cuda.Args
		return launchFit(kern.channel_gate_backward_f32, total, a.Ptr(dx.dptr()).Ptr(dout.dptr()).Ptr(scale.dptr()).
			Ptr(dAvg.dptr()).Ptr(dMax.dptr()).Ptr(am).I64(int64(total)).Int(hw))
	}, func(host hostCopy, idx []int32) error {
		return ChannelGateBackward(host(dx), host(dout), host(scale), host(dAvg), host(dMax), idx)
	}, dx, dout, scale, dAvg, dMax)
}

func spatialGateBackwardCUDA(dx, dout, att, dPooled *Tensor, argmax []int32) error {
	c, hw := dx.Dim(1), dx.Dim(2)*dx.Dim(3)
	return runIndexedBackward("SpatialGateBackward", dx, argmax, c, func(am cuda.Ptr, total int) error {
		var a cuda.Args
		return launchFit(kern.spatial_gate_backward_f32, total, a.Ptr(dx.dptr()).Ptr(dout.dptr()).Ptr(att.dptr()).
			Ptr(dPooled.dptr()).Ptr(am).I64(int64(total)).Int(c).Int(hw).F32(1/float32(c)))
	}, func(host hostCopy, idx []int32) error {
		return SpatialGateBackward(host(dx), host(dout), host(att), host(dPooled), idx)
	}, dx, dout, att, dPooled)
}

func transpose12CUDA(out, x *Tensor) error {
	n, a, b := x.Dim(0), x.Dim(1), x.Dim(2)
	return runCUDA("Transpose12", func() error {
		grid := cuda.Dim3{X: uint32((b + 31) / 32), Y: uint32((a + 31) / 32), Z: uint32(min(n, 65535))}
		var args cuda.Args
		return cuda.Launch(kern.transpose12_f32, grid, cuda.Dim3{X: 32, Y: 8, Z: 1}, 0,
			args.Ptr(out.dptr()).Ptr(x.dptr()).Int(n).Int(a).Int(b))
	}, func(host hostCopy) error { return Transpose12(host(out), host(x)) }, out, x)
}
