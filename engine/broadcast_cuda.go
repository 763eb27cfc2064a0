package engine

import (
	"fmt"
	"math"

	"github.com/kiln-ml/kiln/cuda"
)

// The GPU side of broadcast.go: kernels/broadcast.cu. The kernels take the
// broadcast plan as its axis count and eight descriptors size<<32 | g stride,
// outermost first.

// packPlan appends the plan to a kernel's arguments.
func packPlan(op string, a *cuda.Args, p *broadcastPlan) error {
	a.Int(p.k)
	for i := range maxBroadcastRank {
		var d uint64
		if i < p.k {
			if p.size[i] > math.MaxUint32 || p.stride[i] > math.MaxUint32 {
				return fmt.Errorf("%s: an axis of %d elements is too long for the CUDA kernel: %w", op, p.size[i], ErrNoKernel)
			}
			d = uint64(p.size[i])<<32 | uint64(p.stride[i])
		}
		a.U64(d)
	}
	return nil
}

func broadcastMultiplyForwardCUDA(p *broadcastPlan, out, x, g *Tensor) error {
	const op = "BroadcastMultiplyForward"
	return runCUDA(op, func() error { return broadcastMul(op, p, out, x, g) },
		func(host hostCopy) error { return BroadcastMultiplyForward(host(out), host(x), host(g)) }, out, x, g)
}

// broadcastMul launches out = x ⊙ g over the plan (also dx = dout ⊙ g).
func broadcastMul(op string, p *broadcastPlan, out, x, g *Tensor) error {
	n := x.Len()
	var a cuda.Args
	a.Ptr(out.dptr()).Ptr(x.dptr()).Ptr(g.dptr()).I64(int64(n))
	if err := packPlan(op, &a, p); err != nil {
		return err
	}
	return launchElt(kern.broadcast_mul_forward_f32, n, &a)
}

// broadcastMultiplyBackwardCUDA writes dg (the reduction, first: dx may alias dout
// or x) and then dx; either may be nil. x is not empty.
func broadcastMultiplyBackwardCUDA(p *broadcastPlan, dx, dg, dout, x, g *Tensor) error {
	const op = "BroadcastMultiplyBackward"
	return runCUDA(op, func() error {
		if dg != nil {
			G := g.Len()
			R := x.Len() / G
			// A thread per element of g when neighbouring elements of g multiply
			// neighbouring elements of x (or there is little to add); a warp per
			// element, its lanes striding a contiguous run, otherwise.
			perThread := !p.bcast[p.k-1] || R < 32
			blocks, flag := cuda.Blocks(G, eltBlock, eltMaxBlocks), 1
			if !perThread {
				blocks, flag = cuda.Blocks(G, eltBlock/32, eltMaxBlocks), 0
			}
			var a cuda.Args
			a.Ptr(dg.dptr()).Ptr(dout.dptr()).Ptr(x.dptr()).I64(int64(G)).I64(int64(R)).Int(flag)
			if err := packPlan(op, &a, p); err != nil {
				return err
			}
			if err := cuda.Launch(kern.broadcast_mul_backward_f32, cuda.D1(blocks), cuda.D1(eltBlock), 0, &a); err != nil {
				return err
			}
		}
		if dx != nil {
			return broadcastMul(op, p, dx, dout, g)
		}
		return nil
	}, func(host hostCopy) error {
		return BroadcastMultiplyBackward(host(dx), host(dg), host(dout), host(x), host(g))
	}, dx, dg, dout, x, g)
}
