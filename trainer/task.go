package trainer

import (
	"github.com/rs/zerolog"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/trainer/data"
)

// task is what a kind of problem brings to Fit and Evaluate, so that they
// hold no branch on it: the training step, the figures of an evaluation and
// how they are recorded and logged, and which figure early stopping watches.
// Classification and regression implement it.
type task interface {
	// trainStep takes one optimiser step on batch b, whose samples are x
	// (on the trainer's device).
	trainStep(x *engine.Tensor, b *data.Batch, lr float64) (loss float64, correct int, err error)
	// trainStepLogged is trainStep with the loss and correct count put
	// into log, where a GPU step can leave them on the device.
	trainStepLogged(x *engine.Tensor, b *data.Batch, lr float64, log *engine.LossLog) error
	// trainFigures puts an epoch's training figures besides the loss into
	// rec and ev.
	trainFigures(sums epochSums, rec *MetricsRecord, ev *zerolog.Event) *zerolog.Event
	// newEvaluation starts accumulating an evaluation over ds.
	newEvaluation(ds *data.Dataset) evaluation
	// describe puts r's figures on split ("val", "test") into rec and ev;
	// top5 asks for top-5 accuracy too.
	describe(r EvalResult, split string, top5 bool, rec *MetricsRecord, ev *zerolog.Event) *zerolog.Event
	// summarize puts the test figures r into sum.
	summarize(r EvalResult, sum *Summary, top5 bool)
	// monitored is the figure of r that early stopping on metric watches.
	monitored(r EvalResult, metric string) float64
}

// evaluation accumulates a model's outputs over a data set, batch by batch.
type evaluation interface {
	// add takes a batch's outputs (on the host); the batch's mean loss must
	// be finite.
	add(out *engine.Tensor, b *data.Batch) error
	// reduce adds up every rank's sums, so that result is the whole data
	// set's (each rank added its shard).
	reduce(w World) error
	result() EvalResult
}

// newTask is the task of a trainer's configuration.
func (t *Trainer) newTask() task {
	if t.Config.Regression {
		return regression{t}
	}
	return classification{t}
}

type classification struct{ t *Trainer }

func (c classification) trainStep(x *engine.Tensor, b *data.Batch, lr float64) (float64, int, error) {
	return c.t.classifier.TrainStep(x, b.Labels, lr)
}

func (c classification) trainStepLogged(x *engine.Tensor, b *data.Batch, lr float64, log *engine.LossLog) error {
	return c.t.classifier.TrainStepLogged(x, b.Labels, lr, log)
}

func (classification) trainFigures(s epochSums, rec *MetricsRecord, ev *zerolog.Event) *zerolog.Event {
	rec.Accuracy = ptr(float64(s.Correct) / float64(max(s.Count, 1)))
	return ev.Float64("train_acc", *rec.Accuracy)
}

func (classification) newEvaluation(ds *data.Dataset) evaluation {
	return &classEvaluation{ds: ds, m: NewClassMetrics(max(ds.NumClasses(), 1))}
}

func (classification) describe(r EvalResult, split string, top5 bool, rec *MetricsRecord, ev *zerolog.Event) *zerolog.Event {
	rec.Accuracy = ptr(r.Accuracy)
	ev = ev.Float64(split+"_acc", r.Accuracy)
	if top5 {
		rec.Top5 = ptr(r.Top5)
		ev = ev.Float64(split+"_top5", r.Top5)
	}
	return ev
}

func (classification) summarize(r EvalResult, sum *Summary, top5 bool) {
	sum.TestAccuracy, sum.Confusion = ptr(r.Accuracy), r.Confusion
	if top5 {
		sum.TestTop5 = ptr(r.Top5)
	}
}

func (classification) monitored(r EvalResult, metric string) float64 {
	if metric == "val_acc" {
		return r.Accuracy
	}
	return r.Loss
}

type classEvaluation struct {
	ds *data.Dataset
	m  *ClassMetrics
}

func (e *classEvaluation) add(out *engine.Tensor, b *data.Batch) error {
	loss, _, err := engine.SoftmaxCrossEntropyForward(nil, out, b.Labels, 0)
	if err != nil {
		return err
	}
	if err := finiteLoss(e.ds, loss); err != nil {
		return err
	}
	return e.m.Add(loss, out, b.Labels)
}

func (e *classEvaluation) reduce(w World) error {
	if w.Size() == 1 {
		return nil
	}
	m := e.m
	buf := []float64{m.LossSum, float64(m.Count), float64(m.Correct), float64(m.Top5)}
	for _, row := range m.Confusion {
		for _, v := range row {
			buf = append(buf, float64(v))
		}
	}
	if err := w.AllreduceSumFloat64(buf); err != nil {
		return err
	}
	m.LossSum, m.Count, m.Correct, m.Top5 = buf[0], int(buf[1]), int(buf[2]), int(buf[3])
	k := 4
	for _, row := range m.Confusion {
		for j := range row {
			row[j] = int(buf[k])
			k++
		}
	}
	return nil
}

func (e *classEvaluation) result() EvalResult {
	m := e.m
	return EvalResult{Loss: m.Loss(), Accuracy: m.Accuracy(), Top5: m.Top5Accuracy(), Confusion: m.Confusion, Count: m.Count}
}

type regression struct{ t *Trainer }

func (r regression) trainStep(x *engine.Tensor, b *data.Batch, lr float64) (float64, int, error) {
	y, err := r.t.onDevice(&r.t.yDev, b.Targets)
	if err != nil {
		return 0, 0, err
	}
	loss, err := r.t.regressor.TrainStep(x, y, lr)
	return loss, 0, err
}

// trainStepLogged: a regression step reads its loss back (MSEForward), and
// logs it on the host.
func (r regression) trainStepLogged(x *engine.Tensor, b *data.Batch, lr float64, log *engine.LossLog) error {
	loss, _, err := r.trainStep(x, b, lr)
	if err != nil {
		return err
	}
	return log.Add(engine.StepLoss{Loss: loss})
}

func (regression) trainFigures(_ epochSums, _ *MetricsRecord, ev *zerolog.Event) *zerolog.Event {
	return ev
}

func (regression) newEvaluation(ds *data.Dataset) evaluation {
	return &regressionEvaluation{ds: ds, m: RegressionMetrics{Shift: ds.TargetShift}}
}

// describe logs R² for the test alone: a validation line stays short.
func (regression) describe(r EvalResult, split string, _ bool, rec *MetricsRecord, ev *zerolog.Event) *zerolog.Event {
	rec.RMSE, rec.MAE, rec.R2 = ptr(r.RMSE), ptr(r.MAE), ptr(r.R2)
	ev = ev.Float64(split+"_rmse", r.RMSE).Float64(split+"_mae", r.MAE)
	if split == "test" {
		ev = ev.Float64("test_r2", r.R2)
	}
	return ev
}

func (regression) summarize(r EvalResult, sum *Summary, _ bool) {
	sum.TestRMSE, sum.TestMAE, sum.TestR2 = ptr(r.RMSE), ptr(r.MAE), ptr(r.R2)
}

func (regression) monitored(r EvalResult, metric string) float64 {
	if metric == "val_rmse" {
		return r.RMSE
	}
	return r.Loss
}

type regressionEvaluation struct {
	ds         *data.Dataset
	m          RegressionMetrics
	pred, targ []float64
}

// add compares predictions and targets in the target's own unit.
func (e *regressionEvaluation) add(out *engine.Tensor, b *data.Batch) error {
	loss, err := engine.MSEForward(out, b.Targets)
	if err != nil {
		return err
	}
	if err := finiteLoss(e.ds, loss); err != nil {
		return err
	}
	pred, err := out.ValuesErr() // on the host after Evaluate's copy, but said so
	if err != nil {
		return err
	}
	targ, err := b.Targets.ValuesErr()
	if err != nil {
		return err
	}
	e.pred, e.targ = e.pred[:0], e.targ[:0]
	for i := 0; i < b.Size(); i++ {
		e.pred = append(e.pred, e.ds.TargetValue(pred[i]))
		e.targ = append(e.targ, e.ds.TargetValue(targ[i]))
	}
	e.m.Add(loss, e.pred, e.targ)
	return nil
}

func (e *regressionEvaluation) reduce(w World) error {
	if w.Size() == 1 {
		return nil
	}
	m := &e.m
	buf := []float64{float64(m.Count), m.SumSq, m.SumAbs, m.SumY, m.SumYY, m.LossSum}
	if err := w.AllreduceSumFloat64(buf); err != nil {
		return err
	}
	m.Count, m.SumSq, m.SumAbs, m.SumY, m.SumYY, m.LossSum = int(buf[0]), buf[1], buf[2], buf[3], buf[4], buf[5]
	return nil
}

func (e *regressionEvaluation) result() EvalResult {
	m := &e.m
	return EvalResult{Loss: m.Loss(), RMSE: m.RMSE(), MAE: m.MAE(), R2: m.R2(), Count: m.Count}
}
