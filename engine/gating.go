package engine

import (
	"fmt"
)

// The Spatial Gating Unit of gMLP (Liu et al., "Pay Attention to MLPs", 2021),
// fused into one op. For each sample of z: (N,T,2D), T tokens of 2D channels:
//
//	u, v = z[…, :D], z[…, D:]
//	vn   = LayerNorm_D(v)·γ + β                  γ, β: (D), ε as given (1e-5)
//	vm   = W·vn + b   (vm[t,:] = Σ_s W[t,s]·vn[s,:] + b[t])   W: (T,T), b: (T)
//	out  = u ⊙ vm                                 out: (N,T,D)
//
// The token mixing W·vn is one (T×T)·(T×D) gemm per sample; samples are
// spread over the workers.
//
// Initialisation (the layer's business, noted here because the unit depends
// on it): W near zero, e.g. uniform in ±1e-3, and b = 1, so vm ≈ 1 and the
// unit starts as out ≈ u, an identity-like gate, as the paper prescribes.

// SpatialGatingSaved holds what SpatialGatingForward keeps for the backward
// pass. Keep one per layer and call Ensure before each forward pass.
type SpatialGatingSaved struct {
	Norm  *Tensor // vn = LayerNorm(v)·γ+β: (N,T,D)
	Mixed *Tensor // vm = W·vn + b: (N,T,D)
	Mean  *Tensor // each token's mean of v: (N,T)
	RStd  *Tensor // each token's 1/√(var(v)+ε): (N,T)
}

// Ensure makes the saved tensors fit z: (N,T,2D) of dtype dt, reusing them
// when they already do.
func (s *SpatialGatingSaved) Ensure(dt DType, n, t, d int) {
	s.Norm = Ensure(s.Norm, dt, n, t, d)
	s.Mixed = Ensure(s.Mixed, dt, n, t, d)
	s.Mean = Ensure(s.Mean, dt, n, t)
	s.RStd = Ensure(s.RStd, dt, n, t)
}

// SpatialGatingForward computes the Spatial Gating Unit (see the top of this
// file) into out and saved. gamma, beta and b may be nil (no affine, no bias).
//
//	out: (N,T,D)  saved: see SpatialGatingSaved  z: (N,T,2D)
//	gamma, beta: (D)  w: (T,T)  b: (T)
func SpatialGatingForward(out *Tensor, saved *SpatialGatingSaved, z, gamma, beta, w, b *Tensor, eps float64) error {
	const op = "SpatialGatingForward"
	if out == nil || saved == nil || z == nil || w == nil {
		return shapeErr(op, "out, saved, z and w are required", "out", out, "z", z, "w", w)
	}
	dt, err := checkSpatialGating(op, saved, z, gamma, w, [3]*Tensor{out}, [3]*Tensor{beta}, [2]*Tensor{b})
	if err != nil {
		return shapeErrGating(op, err, "out", out, "z", z, "gamma", gamma, "beta", beta, "w", w, "b", b, saved)
	}
	if !(eps >= 0) {
		return &ShapeError{Op: op, Msg: fmt.Sprintf("negative eps %v", eps)}
	}
	prec, err := checkPrecision(op, w)
	if err != nil {
		return err
	}
	if z.device == CUDA {
		return spatialGatingForwardCUDA(out, saved, z, gamma, beta, w, b, eps)
	}
	n, t, d := z.shape[0], z.shape[1], z.shape[2]/2
	pick(dt, runSpatialGating[float32], runSpatialGating[float64])(spatialGatingArgs{
		out: out, z: z, gamma: gamma, beta: beta, w: w, b: b, saved: saved, eps: eps, n: n, t: t, d: d, prec: prec})
	return nil
}

// SpatialGatingBackward is the unit's backward pass. dz is overwritten; dgamma,
// dbeta, dw and db accumulate, their per-part sums added in a fixed order. Any
// gradient may be nil; gamma is nil when the forward pass had none.
//
//	dz: (N,T,2D)  dgamma, dbeta: (D)  dw: (T,T)  db: (T)  dout: (N,T,D)
//	z: (N,T,2D)  saved: from the forward pass  gamma: (D)  w: (T,T)
func SpatialGatingBackward(dz, dgamma, dbeta, dw, db, dout, z *Tensor, saved *SpatialGatingSaved, gamma, w *Tensor) error {
	const op = "SpatialGatingBackward"
	if dout == nil || saved == nil || z == nil || w == nil {
		return shapeErr(op, "dout, saved, z and w are required", "dout", dout, "z", z, "w", w)
	}
	dt, err := checkSpatialGating(op, saved, z, gamma, w, [3]*Tensor{dout}, [3]*Tensor{dgamma, dbeta}, [2]*Tensor{db})
	if err == nil && (dz != nil && !sameShape(dz.shape, z.shape) || dw != nil && !sameShape(dw.shape, w.shape)) {
		err = errGatingShape
	}
	if err == nil {
		_, _, err = agreeDev(op, z, dz, dw)
	}
	if err != nil {
		return shapeErrGating(op, err, "dz", dz, "dgamma", dgamma, "dbeta", dbeta, "dw", dw, "db", db,
			"dout", dout, "z", z, "gamma", gamma, "w", w, saved)
	}
	prec, err := checkPrecision(op, w)
	if err != nil {
		return err
	}
	if z.device == CUDA {
		return spatialGatingBackwardCUDA(dz, dgamma, dbeta, dw, db, dout, z, saved, gamma, w)
	}
	n, t, d := z.shape[0], z.shape[1], z.shape[2]/2
	pick(dt, runSpatialGating[float32], runSpatialGating[float64])(spatialGatingArgs{backward: true,
		dz: dz, dgamma: dgamma, dbeta: dbeta, dw: dw, db: db, out: dout, z: z, gamma: gamma, w: w, saved: saved,
		n: n, t: t, d: d, prec: prec})
	return nil
}

// errGatingShape marks a shape mismatch for the entry point to report.
var errGatingShape = &ShapeError{}

// checkSpatialGating checks z (N,T,2D), w (T,T), the saved tensors, the
// (N,T,D) tensors nd, the (D) tensors perD and the (T) tensors perT; nil
// entries of the last three are skipped.
func checkSpatialGating(op string, s *SpatialGatingSaved, z, gamma, w *Tensor, nd, perD [3]*Tensor, perT [2]*Tensor) (DType, error) {
	if s.Norm == nil || s.Mixed == nil || s.Mean == nil || s.RStd == nil {
		return 0, errGatingShape
	}
	_, dt, err := agreeDev(op, z, gamma, w, nd[0], nd[1], nd[2], perD[0], perD[1], perD[2], perT[0], perT[1],
		s.Norm, s.Mixed, s.Mean, s.RStd)
	if err != nil {
		return 0, err
	}
	if z.Rank() != 3 || z.shape[2]%2 != 0 || z.shape[2] == 0 {
		return 0, errGatingShape
	}
	n, t, d := z.shape[0], z.shape[1], z.shape[2]/2
	ok := sameShape(w.shape, []int{t, t}) && sameShape(s.Norm.shape, []int{n, t, d}) &&
		sameShape(s.Mixed.shape, []int{n, t, d}) && s.Mean.Len() == n*t && s.RStd.Len() == n*t &&
		(gamma == nil || sameShape(gamma.shape, []int{d}))
	for _, x := range nd {
		ok = ok && (x == nil || sameShape(x.shape, []int{n, t, d}))
	}
	for _, x := range perD {
		ok = ok && (x == nil || sameShape(x.shape, []int{d}))
	}
	for _, x := range perT {
		ok = ok && (x == nil || sameShape(x.shape, []int{t}))
	}
	if !ok {
		return 0, errGatingShape
	}
	return dt, nil
}

// shapeErrGating turns errGatingShape into a ShapeError naming every
// argument (name, tensor pairs, then the saved tensors); other errors pass.
func shapeErrGating(op string, err error, args ...any) error {
	if err != errGatingShape {
		return err
	}
	s := args[len(args)-1].(*SpatialGatingSaved)
	args = append(args[:len(args)-1], "saved.Norm", s.Norm, "saved.Mixed", s.Mixed, "saved.Mean", s.Mean, "saved.RStd", s.RStd)
	return shapeErr(op, "want z (N,T,2D), out/dout and saved.Norm/Mixed (N,T,D), saved.Mean/RStd (N,T), "+
		"gamma/beta (D), w (T,T), b (T)", args...)
}

type spatialGatingTask[T Float] struct {
	backward                  bool
	out, z, gamma, beta, w, b []T // out is dout in the backward pass
	norm, mixed, mean, rstd   []T
	dz, dgamma, dbeta, dw, db []T
	scratch                   []T       // per part: dvm (T·D), dvn (T·D), dW partial (T·T)
	partial                   []float64 // per part: db (T), dgamma (D), dbeta (D) partials
	eps                       float64
	n, t, d                   int
	// inParts: the samples are split over the workers, so each part's
	// products run on its own thread instead of splitting again.
	inParts bool
	prec    Precision // of the token products (w's)
}

var spatialGatingTasks = [2]taskPool{
	{New: func() any { return new(spatialGatingTask[float32]) }},
	{New: func() any { return new(spatialGatingTask[float64]) }},
}

// spatialGatingArgs are one call of the unit: its tensors (nil where unused)
// and sizes, bound to a spatialGatingTask of their dtype by runSpatialGating.
type spatialGatingArgs struct {
	backward                  bool
	out, z, gamma, beta, w, b *Tensor // out is dout in the backward pass
	saved                     *SpatialGatingSaved
	dz, dgamma, dbeta, dw, db *Tensor
	eps                       float64
	n, t, d                   int
	prec                      Precision
}

// runSpatialGating splits the samples over the workers; in the backward pass
// each part sums its parameter gradients apart and the parts are added in
// order afterwards.
func runSpatialGating[T Float](a spatialGatingArgs) {
	args := &spatialGatingTask[T]{backward: a.backward, out: dataAs[T](a.out), z: dataAs[T](a.z),
		gamma: dataAs[T](a.gamma), beta: dataAs[T](a.beta), w: dataAs[T](a.w), b: dataAs[T](a.b),
		norm: dataAs[T](a.saved.Norm), mixed: dataAs[T](a.saved.Mixed), mean: dataAs[T](a.saved.Mean),
		rstd: dataAs[T](a.saved.RStd), dz: dataAs[T](a.dz), dgamma: dataAs[T](a.dgamma), dbeta: dataAs[T](a.dbeta),
		dw: dataAs[T](a.dw), db: dataAs[T](a.db), eps: a.eps, n: a.n, t: a.t, d: a.d, prec: a.prec}
	t, d := args.t, args.d
	p := 1
	if args.n*t*t*d >= 1<<16 {
		p = parts(args.n)
	}
	if args.backward {
		args.scratch = takeScratch[T](p * (2*t*d + t*t))
		args.partial = takeScratch[float64](p * (t + 2*d))
	}
	if p == 1 {
		args.run(0, 0, args.n)
	} else {
		pl := &spatialGatingTasks[dtypeIndex[T]()]
		task := pl.Get().(*spatialGatingTask[T])
		*task = *args
		task.inParts = true
		parallelFor(args.n, task)
		*task = spatialGatingTask[T]{}
		pl.Put(task)
	}
	if !args.backward {
		return
	}
	for part := 0; part < p; part++ {
		if args.dw != nil {
			dwp := args.scratch[part*(2*t*d+t*t)+2*t*d : (part+1)*(2*t*d+t*t)]
			for i, v := range dwp {
				args.dw[i] += v
			}
		}
		pp := args.partial[part*(t+2*d) : (part+1)*(t+2*d)]
		addPartial(args.db, pp[:t])
		addPartial(args.dgamma, pp[t:t+d])
		addPartial(args.dbeta, pp[t+d:])
	}
	giveScratch(args.scratch)
	giveScratch(args.partial)
}

func (a *spatialGatingTask[T]) run(part, lo, hi int) {
	if a.backward {
		a.backwardRange(part, lo, hi)
	} else {
		a.forwardRange(lo, hi)
	}
}

func (a *spatialGatingTask[T]) forwardRange(lo, hi int) {
	t, d := a.t, a.d
	for s := lo; s < hi; s++ {
		z := a.z[s*t*2*d : (s+1)*t*2*d]
		vn := a.norm[s*t*d : (s+1)*t*d]
		vm := a.mixed[s*t*d : (s+1)*t*d]
		rows := lnRows[T]{out: vn, x: z[d:], mean: a.mean[s*t:], rstd: a.rstd[s*t:],
			gamma: a.gamma, beta: a.beta, ldo: d, ldx: 2 * d, rows: t, d: d, eps: a.eps}
		if !layerNormC(&rows, false, nil, nil) {
			for i := 0; i < t; i++ {
				mean, rstd := layerNormRow(vn[i*d:i*d+d], z[i*2*d+d:i*2*d+2*d], a.gamma, a.beta, a.eps)
				a.mean[s*t+i], a.rstd[s*t+i] = T(mean), T(rstd)
			}
		}
		gemmAt(a.prec, a.inParts, false, false, t, d, t, 1, a.w, t, vn, d, 0, vm, d)
		out := a.out[s*t*d : (s+1)*t*d]
		if !sguGateC(out, vm, z, a.b, t, d) {
			for i := 0; i < t; i++ {
				var bi T
				if a.b != nil {
					bi = a.b[i]
				}
				u, m, o := z[i*2*d:i*2*d+d], vm[i*d:i*d+d], out[i*d:i*d+d]
				for j := range m {
					m[j] += bi
					o[j] = u[j] * m[j]
				}
			}
		}
	}
}

func (a *spatialGatingTask[T]) backwardRange(part, lo, hi int) {
	t, d := a.t, a.d
	sc := a.scratch[part*(2*t*d+t*t) : (part+1)*(2*t*d+t*t)]
	dvm, dvn, dwp := sc[:t*d], sc[t*d:2*t*d], sc[2*t*d:]
	pp := a.partial[part*(t+2*d) : (part+1)*(t+2*d)]
	dbp, dgp, dbetap := pp[:t], pp[t:t+d], pp[t+d:]
	if a.dgamma == nil {
		dgp = nil
	}
	if a.dbeta == nil {
		dbetap = nil
	}
	needNorm := a.dz != nil || a.dgamma != nil || a.dbeta != nil
	for s := lo; s < hi; s++ {
		z := a.z[s*t*2*d : (s+1)*t*2*d]
		dout := a.out[s*t*d : (s+1)*t*d]
		vm := a.mixed[s*t*d : (s+1)*t*d]
		var dz []T
		if a.dz != nil {
			dz = a.dz[s*t*2*d : (s+1)*t*2*d]
		}
		// dvm = dout ⊙ u, du = dout ⊙ vm, db += Σ_d dvm.
		if !sguGateBackwardC(dvm, dz, dbp, dout, z, vm, t, d) {
			for i := 0; i < t; i++ {
				u, g, m := z[i*2*d:i*2*d+d], dout[i*d:i*d+d], vm[i*d:i*d+d]
				dm := dvm[i*d : i*d+d]
				sum := 0.0
				for j, v := range g {
					dm[j] = v * u[j]
					sum += float64(dm[j])
				}
				dbp[i] += sum
				if dz != nil {
					du := dz[i*2*d : i*2*d+d]
					for j, v := range g {
						du[j] = v * m[j]
					}
				}
			}
		}
		vn := a.norm[s*t*d : (s+1)*t*d]
		if a.dw != nil { // dW += dvm·vnᵀ
			gemmAt(a.prec, a.inParts, false, true, t, t, d, 1, dvm, d, vn, d, 1, dwp, t)
		}
		if !needNorm {
			continue
		}
		gemmAt(a.prec, a.inParts, true, false, t, d, t, 1, a.w, t, dvm, d, 0, dvn, d) // dvn = Wᵀ·dvm
		rows := lnRows[T]{x: z[d:], dout: dvn, mean: a.mean[s*t:], rstd: a.rstd[s*t:], gamma: a.gamma,
			ldo: 2 * d, ldx: 2 * d, ldd: d, rows: t, d: d}
		if dz != nil {
			rows.out = dz[d:]
		}
		if layerNormC(&rows, true, dgp, dbetap) {
			continue
		}
		for i := 0; i < t; i++ {
			var dv []T
			if dz != nil {
				dv = dz[i*2*d+d : i*2*d+2*d]
			}
			layerNormRowBackward(dv, dgp, dbetap, dvn[i*d:i*d+d], z[i*2*d+d:i*2*d+2*d],
				float64(a.mean[s*t+i]), float64(a.rstd[s*t+i]), a.gamma)
		}
	}
}
