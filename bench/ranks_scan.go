package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kiln-ml/kiln/mpi"
)

// RankScaling is one model's data-parallel throughput: the same global batch
// stepped by one rank and by two (each one thread, on this machine, the
// gradients all-reduced over MPI every step).
type RankScaling struct {
	Model  string      `json:"model"`
	Input  string      `json:"input"`
	Batch  int         `json:"batch"` // global
	Points []RankPoint `json:"points"`
}

// RankPoint is one number of ranks.
type RankPoint struct {
	Ranks                 int     `json:"ranks"`
	Kiln                  float64 `json:"kiln_images_per_sec,omitempty"` // global batch's images/s
	CommShare             float64 `json:"comm_share,omitempty"`          // all-reduce's share of the time, mean over ranks
	AllreduceBytesPerStep int64   `json:"allreduce_bytes_per_step,omitempty"`
	KilnError             string  `json:"kiln_error,omitempty"`
}

// errKilnWithoutMPI is a kiln that refused to run as one of several ranks.
var errKilnWithoutMPI = errors.New("the ranks scan runs kiln under mpirun, and " + mpi.NotBuiltMessage)

// rankCounts are the world sizes the scan compares.
var rankCounts = []int{1, 2}

// ranksSkipped says why the ranks scan cannot run here, or "" when it can:
// it needs the CPU, mpirun, and a kiln built with MPI (this executable's
// build is known; another kiln says so when its first run is refused).
func (s *suite) ranksSkipped() (mpirun string, why string) {
	if s.cfg.Device == "cuda" {
		return "", "a CPU measurement: ranks of one thread each over MPI on this machine"
	}
	mpirun, err := exec.LookPath("mpirun")
	if err != nil {
		return "", "mpirun is not on PATH (Debian: apt-get install openmpi-bin)"
	}
	if !mpi.Built && sameFile(s.cfg.Kiln, executable()) {
		return "", errKilnWithoutMPI.Error()
	}
	return mpirun, ""
}

func executable() string {
	exe, _ := os.Executable()
	return exe
}

func sameFile(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

// runRanks measures each case at each number of ranks. A kiln that turns
// out to be built without MPI ends the scan with the reason in skipped.
func (s *suite) runRanks(ctx context.Context, sc *Scaling) error {
	mpirun, why := s.ranksSkipped()
	if why != "" {
		sc.RanksSkipped = why
		return nil
	}
	cases := []trainCase{{"lenet", "28x28x1", 64, "fp32"}, {"cnn", "32x32x3", 128, "fp32"}, {"gmlp", "32x32x3", 128, "fp32"}}
	if s.cfg.Quick {
		cases = []trainCase{{"lenet", "28x28x1", 8, "fp32"}}
	}
	for _, c := range cases {
		rs := RankScaling{Model: c.Model, Input: c.Input, Batch: c.Batch}
		for _, n := range rankCounts {
			p := RankPoint{Ranks: n}
			l, err := s.kilnRanks(ctx, mpirun, c, n)
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case errors.Is(err, errKilnWithoutMPI):
				sc.RanksSkipped, sc.Ranks = err.Error(), nil
				return nil
			case err != nil:
				p.KilnError = err.Error()
			default:
				p.Kiln, p.CommShare, p.AllreduceBytesPerStep = l.TrainImagesPerSec, l.CommShare, l.AllreduceBytesPerStep
			}
			s.log.Info().Str("case", c.String()).Int("ranks", n).Float64("kiln_img_s", math.Round(p.Kiln)).
				Float64("comm_pct", round1(100*p.CommShare)).Msg("rank scaling")
			rs.Points = append(rs.Points, p)
		}
		sc.Ranks = append(sc.Ranks, rs)
	}
	return nil
}

// kilnRanks runs `mpirun -np n kiln bench --threads 1 --json` for c: n
// ranks of one thread each, sharing the global batch c.Batch.
func (s *suite) kilnRanks(ctx context.Context, mpirun string, c trainCase, n int) (*StepTiming, error) {
	args := []string{"--oversubscribe", "-np", strconv.Itoa(n)}
	if os.Geteuid() == 0 {
		args = append([]string{"--allow-run-as-root"}, args...)
	}
	args = append(args, s.cfg.Kiln, "bench", "--model", c.Model, "--input", c.Input, "--batch", strconv.Itoa(c.Batch),
		"--device", "cpu", "--threads", "1", "--seconds", strconv.FormatFloat(s.plan.scaleSec, 'g', -1, 64),
		"--steps", strconv.Itoa(s.plan.trainSteps), "--warmup", strconv.Itoa(s.plan.warmup), "--json")
	cmd := exec.CommandContext(ctx, mpirun, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if strings.Contains(stderr.String(), mpi.NotBuiltMessage) {
			return nil, fmt.Errorf("%s: %w", s.cfg.Kiln, errKilnWithoutMPI)
		}
		return nil, fmt.Errorf("mpirun -np %d %s bench: %s", n, filepath.Base(s.cfg.Kiln), rankFailure(stderr.String(), err))
	}
	var l StepTiming
	if err := json.Unmarshal([]byte(lastLine(stdout.String())), &l); err != nil {
		return nil, fmt.Errorf("mpirun -np %d kiln bench printed no JSON line: %w", n, err)
	}
	if n > 1 && l.Ranks != n {
		return nil, errors.New("kiln bench under mpirun -np " + strconv.Itoa(n) + " did not run as " + strconv.Itoa(n) + " ranks")
	}
	return &l, nil
}

// rankFailure is why a run under mpirun failed: kiln's own error lines
// (mpirun's account of the exit codes that follows them says less), or the
// end of the output.
func rankFailure(stderr string, err error) string {
	var lines []string
	for l := range strings.Lines(stderr) {
		if strings.HasPrefix(l, "kiln: ") && len(lines) < 2 {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	if len(lines) > 0 {
		return strings.Join(lines, "; ")
	}
	if why := tail(stderr, 300); why != "" {
		return why
	}
	return err.Error()
}
