package layers

import "github.com/kiln-ml/kiln/engine"

// BatchNorm2D is nn.BatchNorm2d (momentum 0.1, eps 1e-5, affine, tracking
// running statistics). It also accepts (N,C) inputs, as BatchNorm1d. Given a
// reducer (SyncBatchNorm, syncbn.go) it normalises with the statistics of the
// global batch of all data-parallel ranks, as nn.SyncBatchNorm.
type BatchNorm2D struct {
	Weight, Bias            *Param
	RunningMean, RunningVar *Param
	Momentum, Eps           float64
	training                bool
	x, out, dx              *engine.Tensor
	mean, invStd            *engine.Tensor
	sync                    batchNormSync // set by SyncBatchNorm (syncbn.go)
	// relu is the ReLU right after this layer in a Sequential (Append links
	// them). A training step of that Sequential (armed, for one Forward)
	// then runs both as one op (engine.BatchNorm2DReLUForward), the same
	// bits with one pass over the activations fewer each way; fused says
	// this step did.
	relu         *Act
	armed, fused bool
	// evaluated: the last Forward was in evaluation mode (running
	// statistics), which Backward then differentiates: frozen batch norm.
	evaluated bool
}

// NewBatchNorm2D starts with weight 1, bias 0, running mean 0 and variance 1.
func NewBatchNorm2D(channels int) *BatchNorm2D {
	b := &BatchNorm2D{
		Weight:      newParam(engine.Float32, true, channels),
		Bias:        newParam(engine.Float32, true, channels),
		RunningMean: newBuffer(engine.Float32, channels),
		RunningVar:  newBuffer(engine.Float32, channels),
		Momentum:    0.1,
		Eps:         1e-5,
		training:    true,
	}
	fillNew(b.Weight.Value, 1)
	fillNew(b.RunningVar.Value, 1)
	return b
}

func (b *BatchNorm2D) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	b.x = x
	b.out = engine.EnsureLike(b.out, x, x.Shape()...)
	b.fused = b.armed && b.relu != nil && b.training && b.sync.reduce == nil
	b.armed, b.evaluated = false, !b.training
	if !b.training {
		return b.out, engine.BatchNorm2DEvalForward(b.out, x, b.Weight.Value, b.Bias.Value,
			b.RunningMean.Value, b.RunningVar.Value, b.Eps)
	}
	c := b.Weight.Value.Len()
	b.mean = engine.EnsureLike(b.mean, x, c)
	b.invStd = engine.EnsureLike(b.invStd, x, c)
	b.sync.synced = b.sync.reduce != nil
	if b.sync.synced {
		return b.out, b.syncForward(x)
	}
	forward := engine.BatchNorm2DForward
	if b.fused {
		forward = engine.BatchNorm2DReLUForward
	}
	err := forward(b.out, b.mean, b.invStd, x, b.Weight.Value, b.Bias.Value,
		b.RunningMean.Value, b.RunningVar.Value, b.Momentum, b.Eps)
	if b.fused {
		b.relu.applied = err == nil
	}
	return b.out, err
}

func (b *BatchNorm2D) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	if b.x == nil {
		return nil, backwardFirst(b)
	}
	b.dx = engine.EnsureLike(b.dx, dout, dout.Shape()...)
	if b.evaluated { // as PyTorch's eval(): saliency maps, fine-tuning with frozen statistics
		return b.dx, engine.BatchNorm2DEvalBackward(b.dx, b.Weight.Grad, b.Bias.Grad, dout, b.x, b.Weight.Value,
			b.RunningMean.Value, b.RunningVar.Value, b.Eps)
	}
	if b.sync.synced {
		return b.dx, b.syncBackward(dout)
	}
	if b.fused {
		return b.dx, engine.BatchNorm2DReLUBackward(b.dx, b.Weight.Grad, b.Bias.Grad, dout, b.out, b.x, b.mean,
			b.invStd, b.Weight.Value)
	}
	return b.dx, engine.BatchNorm2DBackward(b.dx, b.Weight.Grad, b.Bias.Grad, dout, b.x, b.mean, b.invStd, b.Weight.Value)
}

// Walk uses PyTorch's state_dict names. num_batches_tracked is left out: it
// only matters for momentum=None, and PyTorch fills it in when it is missing.
func (b *BatchNorm2D) Walk(prefix string, visit func(string, *Param)) {
	visit(join(prefix, "weight"), b.Weight)
	visit(join(prefix, "bias"), b.Bias)
	visit(join(prefix, "running_mean"), b.RunningMean)
	visit(join(prefix, "running_var"), b.RunningVar)
}

func (b *BatchNorm2D) SetTraining(t bool) { b.training = t }

// LayerNorm is nn.LayerNorm over the last axis (eps 1e-5, affine).
type LayerNorm struct {
	Weight, Bias *Param
	Eps          float64
	x, out, dx   *engine.Tensor
	mean, rstd   *engine.Tensor
}

// NewLayerNorm starts with weight 1 and bias 0.
func NewLayerNorm(dim int) *LayerNorm {
	l := &LayerNorm{Weight: newParam(engine.Float32, true, dim), Bias: newParam(engine.Float32, true, dim), Eps: 1e-5}
	fillNew(l.Weight.Value, 1)
	return l
}

func (l *LayerNorm) Forward(x *engine.Tensor) (*engine.Tensor, error) {
	l.x = x
	rows := x.Len() / max(x.Dim(-1), 1)
	l.out = engine.EnsureLike(l.out, x, x.Shape()...)
	l.mean = engine.EnsureLike(l.mean, x, rows)
	l.rstd = engine.EnsureLike(l.rstd, x, rows)
	return l.out, engine.LayerNormForward(l.out, l.mean, l.rstd, x, l.Weight.Value, l.Bias.Value, l.Eps)
}

func (l *LayerNorm) Backward(dout *engine.Tensor) (*engine.Tensor, error) {
	l.dx = engine.EnsureLike(l.dx, dout, dout.Shape()...)
	return l.dx, engine.LayerNormBackward(l.dx, l.Weight.Grad, l.Bias.Grad, dout, l.x, l.mean, l.rstd, l.Weight.Value)
}

func (l *LayerNorm) Walk(prefix string, visit func(string, *Param)) {
	visit(join(prefix, "weight"), l.Weight)
	visit(join(prefix, "bias"), l.Bias)
}

func (l *LayerNorm) SetTraining(bool) {}
