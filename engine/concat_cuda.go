package engine

import "github.com/kiln-ml/kiln/cuda"

// The GPU side of concat.go: kernels/concat.cu copies up to four parts per
// launch.

// concatPartsPerLaunch is how many parts one concat kernel launch takes.
const concatPartsPerLaunch = 4

// concatCUDA copies parts into cat (forward) or cat into parts (backward,
// where one part may be nil: its columns are skipped). Shapes are checked.
func concatCUDA(cat *Tensor, parts []*Tensor, forward bool) error {
	n := cat.shape[0]
	if cat.Len() == 0 {
		return nil
	}
	catBlock := cat.Len() / n
	perChannel := catBlock / max(cat.shape[1], 1)
	k := kern.concat_backward_f32
	if forward {
		k = kern.concat_forward_f32
	}
	at := 0
	for lo := 0; lo < len(parts); lo += concatPartsPerLaunch {
		var a cuda.Args
		a.Ptr(cat.dptr()).Int(n).I64(int64(catBlock)).I64(int64(at))
		w := 0
		for i := lo; i < lo+concatPartsPerLaunch; i++ {
			var p cuda.Ptr
			b := 0
			switch {
			case i >= len(parts):
			case parts[i] == nil: // backward only (checkConcat)
				b = dxChannels(cat, parts, i) * perChannel
			default:
				p, b = parts[i].dptr(), parts[i].Len()/n
			}
			a.Ptr(p).I64(int64(b))
			w += b
		}
		if w > 0 {
			grid := cuda.Dim3{X: uint32(cuda.Blocks(w, eltBlock, eltMaxBlocks)), Y: uint32(min(n, 65535)), Z: 1}
			if err := cuda.Launch(k, grid, cuda.D1(eltBlock), 0, &a); err != nil {
				return err
			}
		}
		at += w
	}
	return nil
}

// concatForwardCUDA and concatBackwardCUDA wrap concatCUDA for the CUDA
// check (the argument list is only built when the check is on).
func concatForwardCUDA(out *Tensor, xs []*Tensor) error {
	gpu := func() error { return concatCUDA(out, xs, true) }
	if !checkCUDA {
		return gpu()
	}
	return runCUDA("ConcatForward", gpu, func(host hostCopy) error { return ConcatForward(host(out), host.all(xs)) },
		append([]*Tensor{out}, xs...)...)
}

func concatBackwardCUDA(dxs []*Tensor, dout *Tensor) error {
	gpu := func() error { return concatCUDA(dout, dxs, false) }
	if !checkCUDA {
		return gpu()
	}
	return runCUDA("ConcatBackward", gpu, func(host hostCopy) error { return ConcatBackward(host.all(dxs), host(dout)) },
		append([]*Tensor{dout}, dxs...)...)
}
