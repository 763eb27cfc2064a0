package engine

import "github.com/kiln-ml/kiln/cuda"

// The GPU side of gating.go: kernels/gating.cu, with the layer norm of v run
// by the kernels of norm.cu on the strided v half of z.

// EnsureOn is Ensure for the device and dtype of like (z): the saved tensors
// follow z to the GPU.
func (s *SpatialGatingSaved) EnsureOn(like *Tensor, n, t, d int) error {
	var err error
	if s.Norm, err = EnsureOn(s.Norm, like, n, t, d); err != nil {
		return err
	}
	if s.Mixed, err = EnsureOn(s.Mixed, like, n, t, d); err != nil {
		return err
	}
	if s.Mean, err = EnsureOn(s.Mean, like, n, t); err != nil {
		return err
	}
	s.RStd, err = EnsureOn(s.RStd, like, n, t)
	return err
}

// tensors lists the saved tensors for runCUDA; onHost is the same set made of
// their host copies, for the CPU rerun.
func (s *SpatialGatingSaved) tensors() []*Tensor { return []*Tensor{s.Norm, s.Mixed, s.Mean, s.RStd} }

func (s *SpatialGatingSaved) onHost(host hostCopy) *SpatialGatingSaved {
	return &SpatialGatingSaved{Norm: host(s.Norm), Mixed: host(s.Mixed), Mean: host(s.Mean), RStd: host(s.RStd)}
}

// sguMixGrid covers (T,D) with 32×32 tiles; the samples go in z, looped by
// the kernel beyond the grid's limit.
func sguMixGrid(n, t, d int) cuda.Dim3 {
	return cuda.Dim3{X: uint32((d + 31) / 32), Y: uint32((t + 31) / 32), Z: uint32(min(n, 65535))}
}

var sguBlock = cuda.Dim3{X: 16, Y: 16, Z: 1}

// sguKernel picks a token product's kernel by the precision of the token
// weight w: bf16 rounds both operands (checked by the caller); fp32 and TF32
// run in fp32 (the SGU has no TF32 kernel).
func sguKernel(w *Tensor, fp32, bf16 *cuda.Kernel) *cuda.Kernel {
	if w.prec == BF16 {
		return bf16
	}
	return fp32
}

func spatialGatingForwardCUDA(out *Tensor, saved *SpatialGatingSaved, z, gamma, beta, w, b *Tensor, eps float64) error {
	n, t, d := z.shape[0], z.shape[1], z.shape[2]/2
	return runCUDA("SpatialGatingForward", func() error {
		rows := n * t
		if rows == 0 {
			return nil
		}
		v := z.dptr() + cuda.Ptr(4*d)
		if err := layerNormRowsForward(saved.Norm.dptr(), saved.Mean.dptr(), saved.RStd.dptr(), v, optPtr(gamma),
			optPtr(beta), rows, d, 2*d, d, eps); err != nil {
			return err
		}
		var a cuda.Args
		a.Ptr(saved.Mixed.dptr()).Ptr(out.dptr()).Ptr(w.dptr()).Ptr(saved.Norm.dptr()).Ptr(optPtr(b)).Ptr(z.dptr()).
			Int(n).Int(t).Int(d)
		return cuda.Launch(sguKernel(w, kern.sgu_mix_forward_f32, kern.sgu_mix_forward_bf16), sguMixGrid(n, t, d),
			sguBlock, 0, &a)
	}, func(host hostCopy) error {
		return SpatialGatingForward(host(out), saved.onHost(host), host(z), host(gamma), host(beta), host(w), host(b), eps)
	}, append([]*Tensor{out, z, gamma, beta, w, b}, saved.tensors()...)...)
}

// sguWeightGradBlocks is about how many blocks the weight gradient wants in
// flight (two per H100 SM); the samples are split into chunks to get there.
const sguWeightGradBlocks = 264

func spatialGatingBackwardCUDA(dz, dgamma, dbeta, dw, db, dout, z *Tensor, saved *SpatialGatingSaved, gamma, w *Tensor) error {
	n, t, d := z.shape[0], z.shape[1], z.shape[2]/2
	return runCUDA("SpatialGatingBackward", func() error {
		rows := n * t
		if rows == 0 {
			return nil
		}
		tmp, free, err := devTemp(2*rows*d + rows)
		if err != nil {
			return err
		}
		defer free()
		dvm, dvn := tmp, tmp+cuda.Ptr(4*rows*d)
		rowsum := dvn + cuda.Ptr(4*rows*d)

		// dvm = dout ⊙ u, du = dout ⊙ vm, db += Σ_{s,d} dvm.
		var a cuda.Args
		a.Ptr(dvm).Ptr(optPtr(dz)).Ptr(rowsum).Ptr(dout.dptr()).Ptr(z.dptr()).Ptr(saved.Mixed.dptr()).Int(rows).Int(d)
		grid, block := rowLaunch(rows)
		if err := cuda.Launch(kern.sgu_gate_backward_f32, grid, block, 0, &a); err != nil {
			return err
		}
		if err := addPartials(optPtr(db), rowsum, n, t, t); err != nil {
			return err
		}

		// dW += Σ_s dvm_s·vn_sᵀ, per chunk of samples, chunks added in order.
		if dw != nil {
			tiles := (t + 31) / 32
			// At least two samples a chunk: fewer blocks of more work each.
			chunks := max(1, sguWeightGradBlocks/(tiles*tiles))
			perChunk := max(2, (n+chunks-1)/chunks)
			chunks = (n + perChunk - 1) / perChunk
			partial, freeP, err := devTemp(chunks * t * t)
			if err != nil {
				return err
			}
			defer freeP()
			var g cuda.Args
			g.Ptr(partial).Ptr(dvm).Ptr(saved.Norm.dptr()).Int(n).Int(t).Int(d).Int(perChunk)
			grid := cuda.Dim3{X: uint32(tiles), Y: uint32(tiles), Z: uint32(chunks)}
			k := sguKernel(w, kern.sgu_weight_grad_f32, kern.sgu_weight_grad_bf16)
			if err := cuda.Launch(k, grid, sguBlock, 0, &g); err != nil {
				return err
			}
			if err := addPartials(dw.dptr(), partial, chunks, t*t, t*t); err != nil {
				return err
			}
		}

		// dvn = Wᵀ·dvm, then the layer norm's backward pass into dz[…, D:].
		if dz == nil && dgamma == nil && dbeta == nil {
			return nil
		}
		var m cuda.Args
		m.Ptr(dvn).Ptr(w.dptr()).Ptr(dvm).Int(n).Int(t).Int(d)
		k := sguKernel(w, kern.sgu_mix_backward_f32, kern.sgu_mix_backward_bf16)
		if err := cuda.Launch(k, sguMixGrid(n, t, d), sguBlock, 0, &m); err != nil {
			return err
		}
		var dv cuda.Ptr
		if dz != nil {
			dv = dz.dptr() + cuda.Ptr(4*d)
		}
		return layerNormRowsBackward(dv, optPtr(dgamma), optPtr(dbeta), dvn, z.dptr()+cuda.Ptr(4*d),
			saved.Mean.dptr(), saved.RStd.dptr(), optPtr(gamma), rows, d, 2*d, d, 2*d)
	}, func(host hostCopy) error {
		return SpatialGatingBackward(host(dz), host(dgamma), host(dbeta), host(dw), host(db), host(dout), host(z),
			saved.onHost(host), host(gamma), host(w))
	}, append([]*Tensor{dz, dgamma, dbeta, dw, db, dout, z, gamma, w}, saved.tensors()...)...)
}
