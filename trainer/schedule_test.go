package trainer

import (
	"math"
	"strings"
	"testing"

	"github.com/kiln-ml/kiln/trainer/data"
)

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-12*math.Max(1, math.Abs(b)) }

func TestSchedules(t *testing.T) {
	mk := func(c ScheduleConfig) *Schedule {
		t.Helper()
		s, err := NewSchedule(c)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := mk(ScheduleConfig{Kind: "step", BaseLR: 1, Total: 100, StepSize: 30, Gamma: 0.5})
	if !near(s.LR(29), 1) || !near(s.LR(30), 0.5) || !near(s.LR(90), 0.125) {
		t.Fatalf("step: %v %v %v", s.LR(29), s.LR(30), s.LR(90))
	}
	s = mk(ScheduleConfig{Kind: "multistep", BaseLR: 1, Total: 100, Milestones: []int{10, 50}})
	if !near(s.LR(9), 1) || !near(s.LR(10), 0.1) || !near(s.LR(50), 0.01) {
		t.Fatal("multistep")
	}
	// CosineAnnealingLR(T_max=100) stepped 100 times: 1 at step 0, 0.5 at
	// 50, 2.467e-4 at the last (99), never the 0 the step after would have.
	s = mk(ScheduleConfig{Kind: "cosine", BaseLR: 1, Total: 100, Warmup: 0})
	if !near(s.LR(0), 1) || !near(s.LR(50), 0.5) || !near(s.LR(99), (1+math.Cos(math.Pi*0.99))/2) || s.LR(99) < 2.4e-4 {
		t.Fatalf("cosine: %v %v %v", s.LR(0), s.LR(50), s.LR(99))
	}
	s = mk(ScheduleConfig{Kind: "constant", BaseLR: 0.1, Total: 100, Warmup: 10})
	if !near(s.LR(0), 0.01) || !near(s.LR(9), 0.1) || !near(s.LR(50), 0.1) {
		t.Fatal("warm-up")
	}
	// OneCycleLR(max_lr=1, total_steps=100) in PyTorch 1.13: 0.04 at step 0,
	// 1.0 at step 29, 4e-6 at step 99.
	s = mk(ScheduleConfig{Kind: "onecycle", BaseLR: 1, Total: 100})
	if !near(s.LR(0), 0.04) || !near(s.LR(29), 1) || !near(s.LR(99), 4e-6) {
		t.Fatalf("onecycle: %v %v %v", s.LR(0), s.LR(29), s.LR(99))
	}
	s = mk(ScheduleConfig{Kind: "plateau", BaseLR: 1, Total: 100, Patience: 2})
	for _, v := range []float64{1, 0.5, 0.6, 0.6, 0.6} {
		s.Observe(v)
	}
	if !near(s.LR(5), 0.1) {
		t.Fatalf("plateau: %v", s.LR(5))
	}
}

func TestScheduleHorizonErrors(t *testing.T) {
	for _, c := range []ScheduleConfig{
		{Kind: "step", BaseLR: 1, Total: 100, StepSize: 200},
		{Kind: "multistep", BaseLR: 1, Total: 100, Milestones: []int{50, 150}},
		{Kind: "constant", BaseLR: 1, Total: 100, Warmup: 100},
		{Kind: "constant", BaseLR: -1, Total: 100},
		{Kind: "cosine", BaseLR: 1, Total: 0},
		{Kind: "bogus", BaseLR: 1, Total: 10},
		{Kind: "onecycle", BaseLR: 1, Total: 10, Warmup: 2},
	} {
		if _, err := NewSchedule(c); err == nil {
			t.Errorf("%+v accepted", c)
		} else {
			t.Log(err)
		}
	}
}

// CheckSchedule refuses, from the data set's size, what Fit would refuse at
// its start: a warm-up as long as the run.
func TestCheckScheduleFromTheData(t *testing.T) {
	c := DefaultConfig()
	c.Schedule, c.Epochs, c.Batch, c.Warmup = "cosine", 2, 10, 7
	ds := &data.Dataset{Labels: make([]int32, 35), Channels: 1, Height: 1, Width: 1, Images: make([]float32, 35)}
	if err := CheckSchedule(c, ds); err != nil { // 4 batches an epoch, 8 steps
		t.Errorf("a warm-up of 7 in 8 steps: %v", err)
	}
	c.DropLast = true // 3 batches an epoch, 6 steps
	if err := CheckSchedule(c, ds); err == nil || !strings.Contains(err.Error(), "warm-up") {
		t.Errorf("a warm-up of 7 in 6 steps: %v, want it refused", err)
	}
}

// The run's plateau_factor and plateau_patience reach the schedule: with
// patience 1 and factor 0.5, two validations without improvement halve it.
func TestScheduleForPlateauSettings(t *testing.T) {
	c := DefaultConfig()
	c.Schedule, c.LR, c.PlateauFactor, c.PlateauPatience = "plateau", 1, 0.5, 1
	s, err := scheduleFor(c, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []float64{1, 1, 1} {
		s.Observe(v)
	}
	if got := s.LR(5); got != 0.5 {
		t.Fatalf("plateau factor 0.5, patience 1, after 2 stalls: lr %v, want 0.5", got)
	}
}

// As ReduceLROnPlateau's eps of 1e-8: the rate is cut while a cut moves it
// by more than 1e-8 and then stays, where it went on falling to 1e-12.
// torch 1.13 (lr 0.1, factor 0.1, patience 1, metrics 1.0, then 0.9 forever)
// ends at 1e-8.
func TestPlateauStopsCuttingBelowEps(t *testing.T) {
	s, err := NewSchedule(ScheduleConfig{Kind: "plateau", BaseLR: 0.1, Total: 100, Factor: 0.1, Patience: 1})
	if err != nil {
		t.Fatal(err)
	}
	s.Observe(1.0)
	for range 40 {
		s.Observe(0.9)
	}
	if got := s.LR(0); math.Abs(got-1e-8)/1e-8 > 1e-9 {
		t.Fatalf("plateau after 40 stalls: lr %v, want 1e-8 as torch's eps leaves it", got)
	}
}

// A one-cycle warm-up of no steps (pct_start × total = 1) is refused: its
// first rate divided 0 by 0 and was NaN.
func TestOneCycleRefusesAWarmUpOfNoSteps(t *testing.T) {
	for _, c := range []ScheduleConfig{{Total: 10, PctStart: 0.1}, {Total: 2, PctStart: 0.5}} {
		c.Kind, c.BaseLR = "onecycle", 0.1
		if _, err := NewSchedule(c); err == nil || !strings.Contains(err.Error(), "warm-up of no steps") {
			t.Fatalf("onecycle total %d pct_start %v: err %v, want a warm-up of no steps refused", c.Total, c.PctStart, err)
		}
	}
}
