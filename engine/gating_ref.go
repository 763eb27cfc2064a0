package engine

import "math"

// SpatialGatingReference is the Spatial Gating Unit (gating.go) written out
// token by token, every sum in float64 whatever the tensors' dtype: the
// definition to read before the fused op's per-sample products and C row
// kernels, and the oracle they are tested against. gamma, beta and b may be
// nil. With dout it also gives the gradients: dz, and dgamma, dbeta, dw, db
// as sums over the batch (nil without dout).
//
//	z: (N,T,2D)  gamma, beta: (D)  w: (T,T)  b: (T)  dout: (N,T,D) or nil
//	out: (N,T,D), dz like z, as Values() lays them out
func SpatialGatingReference(z, gamma, beta, w, b, dout *Tensor, eps float64) (out, dz, dgamma, dbeta, dw, db []float64, err error) {
	if z.Rank() != 3 || z.Dim(2)%2 != 0 || !w.SameShape(z.Dim(1), z.Dim(1)) {
		return nil, nil, nil, nil, nil, nil, shapeErr("SpatialGatingReference", "want z (N,T,2D) and w (T,T)", "z", z, "w", w)
	}
	n, t, d := z.Dim(0), z.Dim(1), z.Dim(2)/2
	r := sguRef{t: t, d: d, eps: eps, z: z.Values(), w: w.Values(),
		gamma: valuesOr(gamma, d, 1), beta: valuesOr(beta, d, 0), b: valuesOr(b, t, 0)}
	out = make([]float64, n*t*d)
	if dout != nil {
		dz, dgamma, dbeta = make([]float64, len(r.z)), make([]float64, d), make([]float64, d)
		dw, db = make([]float64, t*t), make([]float64, t)
	}
	for s := 0; s < n; s++ {
		z := r.z[s*t*2*d : (s+1)*t*2*d]
		xh, vm := r.forward(out[s*t*d:(s+1)*t*d], z)
		if dout != nil {
			g := sguGrads{dz: dz[s*t*2*d : (s+1)*t*2*d], dgamma: dgamma, dbeta: dbeta, dw: dw, db: db}
			r.backward(&g, dout.Values()[s*t*d:(s+1)*t*d], z, xh, vm)
		}
	}
	return out, dz, dgamma, dbeta, dw, db, nil
}

// valuesOr is t's values, or n copies of v when t is nil.
func valuesOr(t *Tensor, n int, v float64) []float64 {
	if t != nil {
		return t.Values()
	}
	s := make([]float64, n)
	for i := range s {
		s[i] = v
	}
	return s
}

type sguRef struct {
	t, d                 int
	eps                  float64
	z, w, gamma, beta, b []float64
	rstd, vn             []float64 // one sample's: per token; (T,D)
}

type sguGrads struct{ dz, dgamma, dbeta, dw, db []float64 }

// forward writes one sample's out and returns x̂ (the normalised v) and vm.
func (r *sguRef) forward(out, z []float64) (xh, vm []float64) {
	t, d := r.t, r.d
	xh, r.vn, vm, r.rstd = make([]float64, t*d), make([]float64, t*d), make([]float64, t*d), make([]float64, t)
	for i := 0; i < t; i++ {
		v := z[i*2*d+d : (i+1)*2*d]
		mean, ss := 0.0, 0.0
		for _, x := range v {
			mean += x / float64(d)
		}
		for _, x := range v {
			ss += (x - mean) * (x - mean)
		}
		r.rstd[i] = 1 / math.Sqrt(ss/float64(d)+r.eps)
		for j, x := range v {
			xh[i*d+j] = (x - mean) * r.rstd[i]
			r.vn[i*d+j] = xh[i*d+j]*r.gamma[j] + r.beta[j]
		}
	}
	for i := 0; i < t; i++ {
		for j := 0; j < d; j++ {
			m := r.b[i]
			for k := 0; k < t; k++ {
				m += r.w[i*t+k] * r.vn[k*d+j]
			}
			vm[i*d+j] = m
			out[i*d+j] = z[i*2*d+j] * m
		}
	}
	return xh, vm
}

// backward adds one sample's gradients into g (dz is written).
func (r *sguRef) backward(g *sguGrads, dout, z, xh, vm []float64) {
	t, d := r.t, r.d
	dvm, dvn := make([]float64, t*d), make([]float64, t*d)
	for i := 0; i < t; i++ {
		for j := 0; j < d; j++ {
			dvm[i*d+j] = dout[i*d+j] * z[i*2*d+j]
			g.dz[i*2*d+j] = dout[i*d+j] * vm[i*d+j]
			g.db[i] += dvm[i*d+j]
			for k := 0; k < t; k++ {
				g.dw[i*t+k] += dvm[i*d+j] * r.vn[k*d+j]
				dvn[k*d+j] += r.w[i*t+k] * dvm[i*d+j]
			}
		}
	}
	for i := 0; i < t; i++ {
		// dv = rstd·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)), dx̂ = dvn·γ.
		a, c := 0.0, 0.0
		for j := 0; j < d; j++ {
			g.dbeta[j] += dvn[i*d+j]
			g.dgamma[j] += dvn[i*d+j] * xh[i*d+j]
			a += dvn[i*d+j] * r.gamma[j] / float64(d)
			c += dvn[i*d+j] * r.gamma[j] * xh[i*d+j] / float64(d)
		}
		for j := 0; j < d; j++ {
			g.dz[i*2*d+d+j] = r.rstd[i] * (dvn[i*d+j]*r.gamma[j] - a - xh[i*d+j]*c)
		}
	}
}
