package trainer

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"maps"
	"math"
	"os"
	"slices"
	"strings"

	"github.com/kiln-ml/kiln/engine"
	"github.com/kiln-ml/kiln/layers"
	"github.com/kiln-ml/kiln/trainer/data"
)

// World is the set of processes that train one model together, data
// parallel: what Fit needs of MPI and nothing more. The trainer never
// imports MPI itself (it is cgo and a build tag): kiln train hands it
// package mpi's World under mpirun, and a one-process world otherwise.
// Every rank makes the same calls in the same order with buffers of the
// same length.
type World interface {
	Rank() int
	Size() int
	// AllreduceSumFloat32 replaces buf on every rank by the element-wise
	// sum of every rank's buf, with the same bits on every rank.
	AllreduceSumFloat32(buf []float32) error
	AllreduceSumFloat64(buf []float64) error
	// BroadcastFloat32 copies root's buf into every rank's buf.
	BroadcastFloat32(buf []float32, root int) error
	// BroadcastBytes returns root's buf on every rank (the others' buf is
	// ignored).
	BroadcastBytes(buf []byte, root int) ([]byte, error)
	// Agree is nil on every rank when every rank passed the same bytes, an
	// error naming the ranks that differ otherwise.
	Agree(what string, value []byte) error
}

// Solo is the world of one process: every collective leaves its buffer as
// it is. A Trainer without a World runs in it.
type Solo struct{}

func (Solo) Rank() int                                      { return 0 }
func (Solo) Size() int                                      { return 1 }
func (Solo) AllreduceSumFloat32([]float32) error            { return nil }
func (Solo) AllreduceSumFloat64([]float64) error            { return nil }
func (Solo) BroadcastFloat32([]float32, int) error          { return nil }
func (Solo) BroadcastBytes(b []byte, _ int) ([]byte, error) { return b, nil }
func (Solo) Agree(string, []byte) error                     { return nil }

// world is the trainer's world, Solo when none was set.
func (t *Trainer) world() World {
	if t.World == nil {
		return Solo{}
	}
	return t.World
}

// distributed reports whether the trainer shares its steps with other ranks.
func (t *Trainer) distributed() bool { return t.world().Size() > 1 }

// broadcastState copies rank 0's parameters and float32 buffers (batch
// norm's running statistics) to every rank, in the order of their names.
// Internal float64 run state (a dropout layer's stream position) stays each
// rank's.
func (t *Trainer) broadcastState() error {
	state := layers.FullState(t.Model)
	for _, name := range slices.Sorted(maps.Keys(state)) {
		v := state[name]
		if v.DType() != engine.Float32 && v.Device() == engine.CPU {
			continue
		}
		if err := t.broadcastTensor(v); err != nil {
			return fmt.Errorf("broadcast of %s: %w", name, err)
		}
	}
	return nil
}

// broadcastBuffers copies rank 0's buffers (batch norm's running
// statistics) to every rank before an evaluation, as DDP's
// broadcast_buffers does before a forward: each rank's shard is then
// evaluated by the model the run saves (rank 0's), not with the
// statistics of the rank's own batches. With --sync-bn they are alike.
func (t *Trainer) broadcastBuffers() error {
	if !t.distributed() || t.Config.SyncBN {
		return nil
	}
	buffers := map[string]*engine.Tensor{}
	t.Model.Walk("", func(name string, p *layers.Param) {
		if p.Grad == nil && !p.Internal && p.Value.DType() == engine.Float32 {
			buffers[name] = p.Value
		}
	})
	for _, name := range slices.Sorted(maps.Keys(buffers)) {
		if err := t.broadcastTensor(buffers[name]); err != nil {
			return fmt.Errorf("broadcast of %s: %w", name, err)
		}
	}
	return nil
}

// broadcastTensor copies rank 0's v into every rank's, through host memory
// for a device tensor.
func (t *Trainer) broadcastTensor(v *engine.Tensor) error {
	host, err := engine.ToCPU(nil, v)
	if err != nil {
		return err
	}
	if err := t.world().BroadcastFloat32(host.Float32(), 0); err != nil {
		return err
	}
	if host == v {
		return nil
	}
	return v.CopyFrom(host)
}

// syncBatchNorm has every batch norm layer take its statistics over the
// global batch (--sync-bn): two small all-reduces a layer a step.
func (t *Trainer) syncBatchNorm(s *data.Splits) error {
	c := t.Config
	if !c.SyncBN {
		return nil
	}
	if t.device != engine.CPU {
		return fmt.Errorf("--sync-bn runs on the CPU so far (the model is on %v)", t.device)
	}
	// A rank with no samples would have no pass to take part in.
	ranks := t.world().Size()
	if last := s.Train.Len() % c.Batch; last > 0 && last < ranks && !c.DropLast {
		return fmt.Errorf("--sync-bn: each epoch's last batch has %d samples, fewer than the %d ranks, so a rank would have none to normalise: add --drop-last or change --batch",
			last, ranks)
	}
	n := layers.SyncBatchNorm(t.Model, t.world().AllreduceSumFloat64)
	t.Log.Info().Int("layers", n).Msg("sync-bn: batch norm statistics over every rank's samples")
	return nil
}

// rankKey is what every rank of one run must hold alike: the configuration
// less what is a rank's own (where it writes, its threads, device, data
// directory, console and memory check, whether it keeps pictures: rank 0
// alone writes them), and the gradient buckets' size ($KILN_BUCKET_BYTES),
// which sets the all-reduces each step starts. The rest, settings a resume
// may change included (precision, micro-batch, --sync-bn, --stop-after-epoch),
// would make ranks compute different steps or wait in different collectives.
func rankKey(c Config, bucketBytes int) json.RawMessage {
	c.RunDir, c.Threads, c.Device, c.DataDir, c.NoVisuals = "", 0, "", "", false
	c.LogLevel, c.MemoryLimitMB, c.WorldSize = "", 0, 0
	b, _ := json.Marshal(struct {
		Config
		BucketBytes int `json:"$KILN_BUCKET_BYTES,omitempty"` // named as the user sets it, for the refusal
	}{c, bucketBytes})
	return b
}

// rankValues is the error of an Agree that found ranks differing
// (mpi.DisagreeError): every rank's bytes, and the ranks that differ from
// rank 0's.
type rankValues interface {
	RankValues() (values [][]byte, differ []int)
}

// agreeConfig checks that every rank holds configuration key, and names
// the settings each differing rank has otherwise.
func agreeConfig(w World, key json.RawMessage) error {
	return agreeNamed(w, "the configuration", key, "every rank must be given the same settings; "+
		"on --resume a rank that cannot read the run directory's config.yaml needs the run's flags given again")
}

// agreeNamed is w.Agree on JSON settings whose refusal names, for each
// rank that differs, its settings that differ from rank 0's.
func agreeNamed(w World, what string, settings []byte, hint string) error {
	err := w.Agree(what, settings)
	var rv rankValues
	if !errors.As(err, &rv) {
		return err
	}
	values, differ := rv.RankValues()
	var d []string
	for _, r := range differ {
		d = append(d, fmt.Sprintf("rank %d: %s", r, configDiff(values[0], values[r])))
	}
	return fmt.Errorf("ranks disagree on %s, rank 0's → another's: %s (%s)", what, strings.Join(d, "; "), hint)
}

// AgreeSettings checks that every rank holds the same settings (a struct
// or map, compared as JSON), naming each differing rank's differences:
// ranks with other settings wait in collectives of other sizes (a hang, or
// a heap overwritten). kiln bench's ranks use it; a run's use agreeConfig.
func AgreeSettings(w World, settings any) error {
	b, err := json.Marshal(settings)
	if err != nil {
		return err
	}
	return agreeNamed(w, "the settings", b, "every rank must be given the same")
}

// agreeHash checks that every rank holds the same thing, by a hash of its
// bytes.
func agreeHash(w World, what string, b []byte) error {
	h := fnv.New128a()
	h.Write(b)
	return w.Agree(what, h.Sum(nil))
}

// checkGlobalBatch refuses a global batch that does not split evenly across
// the ranks.
func checkGlobalBatch(batch, ranks int) error {
	if ranks > 1 && batch%ranks != 0 {
		return fmt.Errorf("--batch %d is the global batch, split evenly across the %d ranks: it must be a multiple of %d (say --batch %d; "+
			"a resumed run keeps its batch: resume it on a number of ranks that divides %d)",
			batch, ranks, ranks, (batch/ranks+1)*ranks, batch)
	}
	return nil
}

// prepareWorld readies a data-parallel run before its first step: the
// global batch must divide among the ranks, every rank must hold the same
// configuration and data, every rank starts from rank 0's parameters, and
// each step reduces the gradients. A one-process world needs none of it.
func (t *Trainer) prepareWorld(s *data.Splits) error {
	w := t.world()
	if w.Size() == 1 {
		return nil
	}
	c := t.Config
	if err := checkGlobalBatch(c.Batch, w.Size()); err != nil {
		return err
	}
	if err := agreeConfig(w, rankKey(c, t.BucketBytes)); err != nil {
		return err
	}
	if err := agreeHash(w, "the data set", t.dataDigest(s)); err != nil {
		return err
	}
	if err := t.broadcastState(); err != nil {
		return err
	}
	if err := t.syncBatchNorm(s); err != nil {
		return err
	}
	t.dropouts = layers.Dropouts(t.Model)
	t.grads.World = w
	if t.device == engine.CPU {
		t.grads.BucketBytes = cmp.Or(t.BucketBytes, DefaultBucketBytes)
		if m, ok := t.Model.(*layers.Model); ok {
			t.grads.Overlap(m, t.params)
		}
	}
	reduce := func(ps []*layers.Param) error { return t.grads.Reduce(ps, t.gradScale) }
	if t.classifier != nil {
		t.classifier.Reduce = reduce
	} else {
		t.regressor.Reduce = reduce
	}
	return nil
}

// splitsBytes is what identifies the data of a run, for agreeHash: every
// split's samples, labels and targets.
func splitsBytes(s *data.Splits) []byte {
	h := sha256.New()
	for _, ds := range []*data.Dataset{s.Train, s.Val, s.Test} {
		if ds == nil {
			h.Write([]byte{0})
			continue
		}
		fmt.Fprintf(h, "%s %d %d %d %d;", ds.Name, ds.Len(), ds.Channels, ds.Height, ds.Width)
		writeFloats(h, ds.Images)
		writeFloats(h, ds.Targets)
		for _, l := range ds.Labels {
			h.Write([]byte{byte(l), byte(l >> 8), byte(l >> 16), byte(l >> 24)})
		}
	}
	return h.Sum(nil)
}

func writeFloats(h hash.Hash, v []float32) {
	var b [4 << 10]byte
	for len(v) > 0 {
		n := min(len(v), len(b)/4)
		for i, f := range v[:n] {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
		}
		h.Write(b[:4*n])
		v = v[n:]
	}
}

// shareOf is the weight of batch b's gradient in the global batch's: its
// share of the samples (b is one rank's shard of it).
func (t *Trainer) shareOf(b *data.Batch) float64 {
	if b.Total > 0 {
		return float64(b.Size()) / float64(b.Total)
	}
	return 1 / float64(t.world().Size())
}

// reduceSums adds up every rank's epoch sums.
func (t *Trainer) reduceSums(s *epochSums) error {
	buf := []float64{s.LossSum, float64(s.Count), float64(s.Correct)}
	if err := t.world().AllreduceSumFloat64(buf); err != nil {
		return err
	}
	s.LossSum, s.Count, s.Correct = buf[0], int(buf[1]), int(buf[2])
	return nil
}

// idleStep is TrainOnBatch's step on an empty shard.
func (t *Trainer) idleStep(lr float64) error {
	for _, d := range t.dropouts {
		if err := d.SkipBatch(); err != nil {
			return err
		}
	}
	if t.classifier != nil {
		c := t.classifier
		return idleStep(c.params, c.Opt, c.after(), lr)
	}
	r := t.regressor
	return idleStep(r.params, r.Opt, r.after(), lr)
}

// stopping reports whether the run stops here, cancelled: in a world of
// several ranks, every rank learns whether any was cancelled (Ctrl-C
// reaches each rank at its own step), so that all stop before the same
// step and none waits in a collective for a rank that has gone.
func (t *Trainer) stopping(ctx context.Context) bool {
	if !t.distributed() {
		return ctx.Err() != nil
	}
	buf := []float64{0}
	if ctx.Err() != nil {
		buf[0] = 1
	}
	if err := t.world().AllreduceSumFloat64(buf); err != nil {
		return true // the next collective reports it
	}
	return buf[0] > 0
}

// resumeShared is resume in a world of several ranks: rank 0, which alone
// has the run directory, sends its checkpoint to every rank and each
// restores the run from it. The checkpoint does not depend on the number of
// ranks (global steps, one data order, sums over every rank), so a run
// resumes with another number of ranks.
func (f *fitRun) resumeShared() error {
	t := f.t
	if !t.distributed() {
		return f.resume()
	}
	var ckpt []byte
	if t.world().Rank() == 0 {
		if err := f.resume(); err != nil {
			return err // the other ranks wait in the broadcast: kiln train aborts the job
		}
		if t.Run != nil && t.Run.Resuming() {
			b, err := os.ReadFile(t.Run.File(CheckpointFile))
			if err != nil {
				return err
			}
			ckpt = b
		}
	}
	ckpt, err := t.world().BroadcastBytes(ckpt, 0)
	if err != nil || len(ckpt) == 0 || t.world().Rank() == 0 {
		return err
	}
	tmp, err := os.CreateTemp("", "kiln-checkpoint-*.safetensors")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(ckpt)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("resume: rank 0's checkpoint: %w", err)
	}
	if err := f.resumeFrom(tmp.Name()); err != nil {
		return err
	}
	// The checkpoint's epoch sums are every rank's so far: rank 0 carries
	// them, and the epoch's end adds the ranks' sums up.
	f.sums = epochSums{}
	return nil
}
