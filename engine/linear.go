package engine

// Linear: out = x·Wᵀ + b, PyTorch's nn.Linear layout (W is [out, in]).

// LinearForward computes out = x·Wᵀ + b.
//
//	out: (N, O)  x: (N, I)  w: (O, I)  b: (O) or nil
func LinearForward(out, x, w, b *Tensor) error {
	const op = "LinearForward"
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
		return linearForwardCUDA(out, x, w, b)
	}
	pick(dt, linearForward[float32], linearForward[float64])(prec, out, x, w, b, x.Dim(0), x.Dim(1), w.Dim(0))
	return nil
}

// LinearBackward computes dx = dout·W (overwritten), dw += doutᵀ·x and
// db += Σ_n dout. Any of dx, dw, db may be nil.
//
//	dx: (N, I)  dw: (O, I)  db: (O)  dout: (N, O)  x: (N, I)  w: (O, I)
func LinearBackward(dx, dw, db, dout, x, w *Tensor) error {
	const op = "LinearBackward"
	dev, dt, err := agreeDev(op, dx, dw, db, dout, x, w)
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
		return linearBackwardCUDA(dx, dw, db, dout, x, w)
	}
	n, in, o := x.Dim(0), x.Dim(1), w.Dim(0)
	pick(dt, linearBackward[float32], linearBackward[float64])(prec, dx, dw, db, dout, x, w, n, in, o)
	return nil
}

func linearForward[T Float](prec Precision, outT, xT, wT, bT *Tensor, n, in, o int) {
	out, x, w, b := dataAs[T](outT), dataAs[T](xT), dataAs[T](wT), dataAs[T](bT)
	gemmAt(prec, false, false, true, n, o, in, 1, x, in, w, in, 0, out, o)
	if b != nil {
		addRowBias(out, b, n, o)
	}
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

func linearBackward[T Float](prec Precision, dxT, dwT, dbT, doutT, xT, wT *Tensor, n, in, o int) {
	dx, dw, db := dataAs[T](dxT), dataAs[T](dwT), dataAs[T](dbT)
	dout, x, w := dataAs[T](doutT), dataAs[T](xT), dataAs[T](wT)
	if dx != nil {
		gemmAt(prec, false, false, false, n, in, o, 1, dout, o, w, in, 0, dx, in)
	}
	if dw != nil {
		gemmAt(prec, false, true, false, o, in, n, 1, dout, o, x, in, 1, dw, in)
	}
	if db != nil {
		sumRows(db, dout, n, o)
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
