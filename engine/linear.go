package engine

// Linear: out = x·Wᵀ + b, PyTorch's nn.Linear layout (W is [out, in]).

// LinearForward computes out = x·Wᵀ + b.
//
//	out: (N, O)  x: (N, I)  w: (O, I)  b: (O) or nil
func LinearForward(out, x, w, b *Tensor) error {
	return linearForwardOp("LinearForward", false, out, x, w, b)
}

// LinearReLUForward is LinearForward then ReLU, out = max(x·Wᵀ + b, 0): the
// bits of the two ops one after the other. On the GPU the bias and the ReLU
// are the product's epilogue, one launch. Its backward is
// LinearReLUBackward.
func LinearReLUForward(out, x, w, b *Tensor) error {
	return linearForwardOp("LinearReLUForward", true, out, x, w, b)
}

func linearForwardOp(op string, relu bool, out, x, w, b *Tensor) error {
	dev, dt, err := agreeDev(op, out, x, w, b)
	if err != nil {
		return err
	}
	if x.Rank() != 2 || w.Rank() != 2 || out.Rank() != 2 || x.Dim(1) != w.Dim(1) ||
		!out.SameShape(x.Dim(0), w.Dim(0)) || (b != nil && !b.SameShape(w.Dim(0))) {
		return shapeErr(op, "want x (N,I), w (O,I), b (O), out (N,O)", "out", out, "x", x, "w", w, "b", b)
	}
	prec, err := checkPrecision(op, w)
	if err != nil {
		return err
	}
	if dev == CUDA {
		return linearForwardCUDA(op, relu, out, x, w, b)
	}
	pick(dt, linearForward[float32], linearForward[float64])(prec, out, x, w, b, x.Dim(0), x.Dim(1), w.Dim(0))
	if relu {
		return ActivationForward(out, out, ReLU)
	}
	return nil
}

// GradMode is how a backward pass writes the gradients of parameters.
type GradMode uint8

const (
	// AddGrads adds to what the gradients hold (dw += …), as gradients
	// accumulate over backward passes until they are zeroed.
	AddGrads GradMode = iota
	// SetGrads overwrites them (dw = …) without reading them: for the first
	// pass after the gradients were cleared, where zeroing them and then
	// adding would give the same values at the cost of two more passes over
	// them (the weight gradient's product runs with β = 0). Whatever they
	// held, NaN included, is ignored.
	SetGrads
)

// LinearBackward computes dx = dout·W (overwritten), dw += doutᵀ·x and
// db += Σ_n dout. Any of dx, dw, db may be nil.
//
//	dx: (N, I)  dw: (O, I)  db: (O)  dout: (N, O)  x: (N, I)  w: (O, I)
func LinearBackward(dx, dw, db, dout, x, w *Tensor) error {
	return linearBackwardOp("LinearBackward", AddGrads, dx, dw, db, nil, dout, nil, x, w)
}

// LinearBackwardMode is LinearBackward (reluOut and dpre nil) or
// LinearReLUBackward whose dw and db are written as mode says.
func LinearBackwardMode(mode GradMode, dx, dw, db, dpre, dout, reluOut, x, w *Tensor) error {
	if reluOut == nil {
		return linearBackwardOp("LinearBackward", mode, dx, dw, db, nil, dout, nil, x, w)
	}
	return linearReLUBackwardOp(mode, dx, dw, db, dpre, dout, reluOut, x, w)
}

// LinearReLUBackward is the backward pass of LinearReLUForward: dout is the
// gradient of its output out, which passes where out > 0 (as ReLU's
// backward) into dpre, the gradient before the ReLU (overwritten; it may be
// dout itself), and LinearBackward runs on dpre. On the GPU the masking is
// done by the bias gradient's launch.
//
//	dpre, dout, out: (N, O)  the rest as LinearBackward
func LinearReLUBackward(dx, dw, db, dpre, dout, out, x, w *Tensor) error {
	return linearReLUBackwardOp(AddGrads, dx, dw, db, dpre, dout, out, x, w)
}

func linearReLUBackwardOp(mode GradMode, dx, dw, db, dpre, dout, out, x, w *Tensor) error {
	const op = "LinearReLUBackward"
	if dpre == nil || out == nil || dout == nil || !out.SameShape(dout.Shape()...) || !dpre.SameShape(dout.Shape()...) {
		return shapeErr(op, "want dpre and out (the forward's output) shaped as dout", "dpre", dpre, "out", out, "dout", dout)
	}
	return linearBackwardOp(op, mode, dx, dw, db, dpre, dout, out, x, w)
}

// linearBackwardOp runs the backward pass; a non-nil reluOut masks dout
// into dpre first.
func linearBackwardOp(op string, mode GradMode, dx, dw, db, dpre, dout, reluOut, x, w *Tensor) error {
	dev, dt, err := agreeDev(op, dx, dw, db, dout, x, w, dpre, reluOut)
	if err != nil {
		return err
	}
	if x.Rank() != 2 || w.Rank() != 2 || x.Dim(1) != w.Dim(1) || !dout.SameShape(x.Dim(0), w.Dim(0)) ||
		(dx != nil && !dx.SameShape(x.shape...)) || (dw != nil && !dw.SameShape(w.shape...)) ||
		(db != nil && !db.SameShape(w.Dim(0))) {
		return shapeErr(op, "want dout (N,O), x/dx (N,I), w/dw (O,I), db (O)",
			"dx", dx, "dw", dw, "db", db, "dout", dout, "x", x, "w", w)
	}
	prec, err := checkPrecision(op, w)
	if err != nil {
		return err
	}
	if dev == CUDA {
		return linearBackwardCUDA(op, mode, dx, dw, db, dpre, dout, reluOut, x, w)
	}
	if reluOut != nil {
		if err := ActivationBackward(dpre, dout, nil, reluOut, ReLU); err != nil {
			return err
		}
		dout = dpre
	}
	n, in, o := x.Dim(0), x.Dim(1), w.Dim(0)
	pick(dt, linearBackward[float32], linearBackward[float64])(prec, mode, dx, dw, db, dout, x, w, n, in, o)
	return nil
}

func linearForward[T Float](prec Precision, outT, xT, wT, bT *Tensor, n, in, o int) {
	out, x, w, b := dataAs[T](outT), dataAs[T](xT), dataAs[T](wT), dataAs[T](bT)
	gemmBiasAt(prec, false, true, n, o, in, 1, x, in, w, in, 0, out, o, b)
}

// addRowBias adds b (o) to each of the n rows of out (n, o): in C for
// float32 (elementwise_cpu.c, the same bits), else this loop.
func addRowBias[T Float](out, b []T, n, o int) {
	out, b = out[:n*o], b[:o]
	if addRowBiasC(out, b, n, o) {
		return
	}
	for i := 0; i < n; i++ {
		row := out[i*o : i*o+o]
		for j := range row {
			row[j] += b[j]
		}
	}
}

func linearBackward[T Float](prec Precision, mode GradMode, dxT, dwT, dbT, doutT, xT, wT *Tensor, n, in, o int) {
	dx, dw, db := dataAs[T](dxT), dataAs[T](dwT), dataAs[T](dbT)
	dout, x, w := dataAs[T](doutT), dataAs[T](xT), dataAs[T](wT)
	if dx != nil {
		gemmAt(prec, false, false, false, n, in, o, 1, dout, o, w, in, 0, dx, in)
	}
	if dw != nil {
		beta := T(1)
		if mode == SetGrads {
			beta = 0
		}
		gemmAt(prec, false, true, false, o, in, n, 1, dout, o, x, in, beta, dw, in)
	}
	if db != nil {
		if mode == SetGrads {
			clear(db[:o]) // o floats: summing into zeros keeps sumRows' one order
		}
		sumRows(db, dout, n, o)
	}
}

// addBiasRows is addRowBias on m rows of n that are ldc apart (bias nil:
// nothing).
func addBiasRows[T Float](c []T, ldc int, bias []T, m, n int) {
	for i := 0; i < m && bias != nil; i++ {
		addRowBias(c[i*ldc:i*ldc+n], bias, 1, n)
	}
}

// sumRows adds the n rows of dout (n, o) into db (o), one row after the
// other (the same order for every element at every level): in C for float32
// (elementwise_cpu.c, the same bits), else this loop.
func sumRows[T Float](db, dout []T, n, o int) {
	db, dout = db[:o], dout[:n*o]
	if sumRowsC(db, dout, n, o) {
		return
	}
	for i := 0; i < n; i++ {
		row := dout[i*o : i*o+o]
		for j, v := range row {
			db[j] += v
		}
	}
}
