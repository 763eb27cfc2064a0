package bench

import (
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/kiln-ml/kiln/trainer"
)

// Data-parallel step timing (kiln bench under mpirun): what TimeSteps does
// differently when its world has more than one rank.

func sizeOf(w trainer.World) int {
	if w == nil {
		return 1
	}
	return w.Size()
}

func rankOf(w trainer.World) int {
	if w == nil {
		return 0
	}
	return w.Rank()
}

// rankRows is this rank's share of the global batch, refused unless the
// ranks share it evenly (as kiln train refuses it).
func rankRows(w trainer.World, batch int) (int, error) {
	ranks := sizeOf(w)
	if batch < 1 {
		return 0, fmt.Errorf("bench: batch must be positive, got %d", batch)
	}
	if batch%ranks != 0 {
		return 0, fmt.Errorf("bench: the global batch %d does not divide among %d ranks: use a multiple of %d", batch, ranks, ranks)
	}
	return batch / ranks, nil
}

// nextSteps is how many timed steps to run next, after done steps in
// elapsed, 0 when there have been enough: at least c.Steps and c.MinDur. In
// one process that is one step at a time until then. Ranks must agree on it
// (a rank that stopped first would leave the others in an all-reduce for
// ever), so rank 0 decides and broadcasts it, in chunks: a check per step
// would add a collective to every step.
func nextSteps(c StepTimingConfig, done int, elapsed, warmStep time.Duration) (int, error) {
	if sizeOf(c.World) <= 1 {
		if done < c.Steps || elapsed < c.MinDur {
			return 1, nil
		}
		return 0, nil
	}
	var n uint64
	if c.World.Rank() == 0 {
		n = uint64(chunkSteps(done, c.Steps, c.MinDur, elapsed, warmStep))
	}
	buf, err := c.World.BroadcastBytes(binary.LittleEndian.AppendUint64(nil, n), 0)
	if err != nil {
		return 0, fmt.Errorf("bench: agreeing on the number of timed steps: %w", err)
	}
	if len(buf) != 8 {
		return 0, fmt.Errorf("bench: rank 0 sent %d bytes for the number of timed steps", len(buf))
	}
	return int(binary.LittleEndian.Uint64(buf)), nil
}

// chunkSteps is rank 0's next chunk: the steps still owed, or those the
// time still owed takes at the pace measured so far. The first chunk has
// only the warm-up's pace, which a busy moment can make several times too
// slow or fast, so it aims at half the time and the next ones correct it.
func chunkSteps(done, steps int, minDur, elapsed, warmStep time.Duration) int {
	if done >= steps && elapsed >= minDur {
		return 0
	}
	n := max(steps-done, 1)
	left, pace := minDur-elapsed, warmStep
	if done > 1 {
		pace = elapsed / time.Duration(done)
	} else {
		left /= 2
	}
	if left > 0 && pace > 0 {
		n = max(n, int(math.Ceil(float64(left)/float64(pace))))
	}
	return n
}

// resetComm starts the all-reduce's clock with the timed steps.
func (r *stepRun) resetComm() {
	if r.reducer != nil {
		r.reducer.Comm, r.reducer.Calls = 0, 0
	}
}

// rankFigures adds the data-parallel figures to res: the ranks, the
// all-reduce's share of the timed seconds, averaged over the ranks (a rank
// that finished its backward first waits in the all-reduce for the others,
// so one rank's share alone would count the imbalance as communication on
// one side only), and the bytes of one all-reduce.
func (r *stepRun) rankFigures(w trainer.World, res *StepTiming) error {
	if r.reducer == nil {
		return nil
	}
	if r.reducer.Calls != res.Steps {
		return fmt.Errorf("bench: %d all-reduces in %d timed steps", r.reducer.Calls, res.Steps)
	}
	share := []float64{r.reducer.Comm.Seconds() / res.Seconds}
	if err := w.AllreduceSumFloat64(share); err != nil {
		return fmt.Errorf("bench: summing the communication shares: %w", err)
	}
	res.Ranks = w.Size()
	res.CommShare = share[0] / float64(w.Size())
	res.AllreduceBytesPerStep = 4 * int64(res.Params)
	return nil
}
