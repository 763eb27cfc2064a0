package cuda

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// A training step replayed as one CUDA graph (issue 17, item 6).
//
// A StepGraph brackets a step (Begin … End). The step's Go code runs every
// time, as it would without a graph, and so computes every kernel's
// arguments itself; what the graph saves is the driver: one cuGraphLaunch
// for the step's launches, memsets and device copies instead of one call
// each, and the device runs them without gaps between.
//
// It works by verification, so that a graph can never do anything the step
// would not have done:
//   - The first step runs as usual, and its launches, memsets and device
//     copies are recorded: the plan.
//   - Each later step is held back, not issued: each operation is compared
//     with the plan's next one. At End, if the whole step matched, the
//     plan is built into a graph (the first time) and launched.
//   - A launch of the plan's kernel with other arguments or another grid
//     (a learning rate, a dropout offset, a loss log's slot) still
//     matches: its graph node is given the new ones before the launch
//     (cuGraphExecKernelNodeSetParams), so the learning rate and the rest
//     need not move to device memory.
//   - Anything else (another kernel, another memset, one operation more or
//     fewer) issues what was held back, in order, and the step goes on as
//     usual and is recorded as the new plan; its graph is dropped.
//
// While a step is held back, whatever would observe the device or let the
// held-back operations be overtaken first issues them (settle): a copy to
// the host, Synchronize, memory going back to the driver, NCCL, the
// profiler. An upload is queued at once, ahead of the held-back operations
// (it goes through the staging ring, as always); if one of those
// operations names the block it writes to, they are issued first instead.
// A kernel reaches memory only through its arguments (the one table of
// device pointers, the optimiser's, points at parameters, never at an
// upload's target), so this keeps every read and write in the order the
// step made them.
//
// One StepGraph is active at a time; a step on it comes from one goroutine.

// GraphStats counts what a StepGraph did.
type GraphStats struct {
	Steps    int    // steps bracketed
	Replays  int    // steps run as one graph launch
	Builds   int    // graphs built
	Updates  int    // kernel nodes given new arguments before a replay
	Diverged int    // steps that left their plan and ran as usual
	Nodes    int    // operations in the current plan
	LastLeft string // what made the last step that left its plan leave it
	Err      error  // why graphs were turned off (a driver that refused one), or nil
}

type opKind uint8

const (
	opLaunch opKind = iota
	opZero
	opCopy
)

// op is one recorded operation, as the backend takes it.
type op struct {
	kind        opKind
	k           *Kernel
	grid, block Dim3
	shmem       int
	n           int
	slots       [maxArgs]uint64
	dst, src    Ptr
	bytes       int64
}

// sameNode reports whether o can be the graph node made for p: the same
// operation, up to a kernel's arguments, grid and shared memory.
func (o *op) sameNode(p *op) bool {
	switch {
	case o.kind != p.kind:
		return false
	case o.kind == opLaunch:
		return o.k == p.k && o.n == p.n
	default:
		return o.dst == p.dst && o.src == p.src && o.bytes == p.bytes
	}
}

// sameLaunch reports whether a launch's node needs no new parameters.
func (o *op) sameLaunch(p *op) bool {
	return o.grid == p.grid && o.block == p.block && o.shmem == p.shmem && o.slots == p.slots
}

// names reports whether o reads or writes [lo, hi) as far as its arguments
// show: a pointer argument inside it, or a memset's or copy's range over it.
func (o *op) names(lo, hi Ptr) bool {
	if o.kind != opLaunch {
		return o.dst < hi && lo < o.dst+Ptr(o.bytes) || o.kind == opCopy && o.src < hi && lo < o.src+Ptr(o.bytes)
	}
	for _, v := range o.slots[:o.n] {
		if Ptr(v) >= lo && Ptr(v) < hi {
			return true
		}
	}
	return false
}

func (o *op) issue() error {
	switch o.kind {
	case opZero:
		return be.memsetZero(o.dst, o.bytes)
	case opCopy:
		return be.dtod(o.dst, o.src, o.bytes)
	}
	if err := be.launch(o.k.h, o.grid, o.block, o.shmem, &o.slots[0], o.n); err != nil {
		return fmt.Errorf("launch %s grid %v block %v: %w", o.k.Name, o.grid, o.block, err)
	}
	return nil
}

type graphMode uint8

const (
	graphIdle      graphMode = iota // between steps
	graphRecording                  // issuing as usual and recording the plan
	graphHolding                    // holding the step back, matching it against the plan
	graphPassing                    // issuing as usual, recording nothing (graphs off)
)

// StepGraph replays a training step as one CUDA graph once a step has
// repeated the one before it. Make one with NewStepGraph, bracket each step
// with Begin and End, and Release it.
//
// A step that leaves a built graph's plan (a step after a validation, whose
// new buffers are zeroed first; an epoch's short last batch) does not cost
// the graph: the step is kept as a candidate, and the plan stays for the
// next step. Only a candidate that the next step repeats replaces it.
type StepGraph struct {
	mu      sync.Mutex
	mode    graphMode
	plan    []op   // the operations held against: the graph's, once built
	cand    []op   // a recorded step that left the built plan
	cur     []op   // recording: this step's
	held    int    // holding: plan[:held] matched and are not issued yet
	stale   []int  // built: the nodes whose plan arguments the graph lacks
	isStale []bool // by node
	exec    uintptr
	built   bool
	stats   GraphStats
	err     error // the first failure of the held-back operations
}

// active is the StepGraph between Begin and End, if any.
var active atomic.Pointer[StepGraph]

// NewStepGraph makes a StepGraph with no plan yet.
func NewStepGraph() *StepGraph { return &StepGraph{} }

// Begin starts a step. While the profiler runs, or after the driver refused
// a graph, the step runs as usual.
func (g *StepGraph) Begin() error {
	if err := ready(); err != nil {
		return err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mode != graphIdle {
		return fmt.Errorf("cuda: StepGraph.Begin inside a step")
	}
	if !active.CompareAndSwap(nil, g) {
		return fmt.Errorf("cuda: another StepGraph's step is running")
	}
	g.stats.Steps++
	switch {
	case g.stats.Err != nil || profiling.Load():
		g.mode = graphPassing
	case len(g.plan) == 0:
		g.mode, g.cur = graphRecording, g.cur[:0]
	default:
		g.mode, g.held = graphHolding, 0
	}
	return nil
}

// End finishes the step: a step that matched its plan runs now, as one
// graph launch; a recorded one becomes the plan or the candidate. The
// error is the first of the step's held-back operations or of the graph.
func (g *StepGraph) End() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	defer active.CompareAndSwap(g, nil)
	mode := g.mode
	defer func() { g.mode = graphIdle }()
	switch mode {
	case graphRecording:
		g.recorded()
		return g.takeErr()
	case graphHolding:
		if g.held < len(g.plan) {
			g.diverge(fmt.Sprintf("the step ended; the plan has %d operations", len(g.plan)))
			g.recorded()
			return g.takeErr()
		}
		return g.replay()
	}
	return nil
}

// recorded files the step just recorded (cur): as the plan while no graph is
// built; beside a built one as the candidate, unless it repeats the
// candidate, when it replaces the plan with a graph of its own.
func (g *StepGraph) recorded() {
	switch {
	case !g.built:
		g.plan, g.cur = g.cur, g.plan
	case !sameNodes(g.cur, g.cand):
		g.cand, g.cur = g.cur, g.cand
	default:
		g.dropGraph()
		g.plan, g.cur = g.cur, g.plan
		g.cand = g.cand[:0]
		g.build()
	}
	g.stats.Nodes = len(g.plan)
}

// sameNodes reports whether a and b are the same operations up to kernel
// arguments: one graph serves both.
func sameNodes(a, b []op) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].sameNode(&b[i]) {
			return false
		}
	}
	return true
}

// build makes the plan's graph. A driver that refuses it turns graphs off
// for this StepGraph (Stats.Err); the steps run as usual.
func (g *StepGraph) build() bool {
	exec, err := be.buildGraph(g.plan)
	if err != nil {
		g.stats.Err = fmt.Errorf("cuda: building a graph of %d operations: %w", len(g.plan), err)
		return false
	}
	g.exec, g.built = exec, true
	if len(g.isStale) < len(g.plan) {
		g.isStale = make([]bool, len(g.plan))
	}
	g.stats.Builds++
	return true
}

// replay launches the plan as a graph, building it the first time and
// updating the nodes whose arguments changed.
func (g *StepGraph) replay() error {
	if !g.built && !g.build() {
		return g.issueHeld() // the step has not run: run it as usual
	}
	for _, i := range g.stale {
		if err := be.updateGraph(g.exec, i, &g.plan[i]); err != nil {
			g.stats.Err = fmt.Errorf("cuda: updating graph node %d (%s): %w", i, g.plan[i].String(), err)
			g.dropGraph()
			return g.issueHeld()
		}
		g.isStale[i] = false
		g.stats.Updates++
	}
	g.stale = g.stale[:0]
	if err := be.launchGraph(g.exec); err != nil {
		// Run the step as usual, and leave graphs off; a device that
		// fails that too fails the step.
		g.stats.Err = fmt.Errorf("cuda: launching the step's graph: %w", err)
		g.dropGraph()
		return g.issueHeld()
	}
	g.stats.Replays++
	return nil
}

// issueHeld issues the held-back operations as usual, in order.
func (g *StepGraph) issueHeld() error {
	for i := range g.plan[:g.held] {
		if err := g.plan[i].issue(); err != nil {
			return err
		}
	}
	return nil
}

// diverge leaves the plan in the middle of a held-back step: what was held
// back is issued, and the rest of the step runs as usual and is recorded.
// The first failure is kept for End.
func (g *StepGraph) diverge(why string) {
	g.stats.LastLeft = fmt.Sprintf("operation %d: %s", g.held, why)
	if err := g.issueHeld(); err != nil && g.err == nil {
		g.err = err
	}
	g.cur = append(g.cur[:0], g.plan[:g.held]...)
	g.mode = graphRecording
	g.stats.Diverged++
}

func (g *StepGraph) takeErr() error {
	err := g.err
	g.err = nil
	return err
}

func (g *StepGraph) dropGraph() {
	if g.built {
		be.dropGraph(g.exec)
		g.exec, g.built = 0, false
	}
	for _, i := range g.stale {
		g.isStale[i] = false
	}
	g.stale = g.stale[:0]
}

// Stats returns the counts so far.
func (g *StepGraph) Stats() GraphStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.stats
}

// Release frees the graph; the StepGraph starts again with no plan.
func (g *StepGraph) Release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if be != nil {
		g.dropGraph()
	}
	g.plan, g.cand, g.cur = nil, nil, nil
}

// take hands a launch, memset or device copy to the step: true when it was
// recorded or held back, false when the caller issues it as usual. An
// operation that was held back runs later, so its error comes from End.
func (g *StepGraph) take(o *op) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch g.mode {
	case graphRecording:
		g.cur = append(g.cur, *o)
		return false, nil
	case graphHolding:
		if g.held < len(g.plan) && o.sameNode(&g.plan[g.held]) {
			p := &g.plan[g.held]
			if o.kind == opLaunch && !o.sameLaunch(p) {
				*p = *o
				if g.built && !g.isStale[g.held] {
					g.isStale[g.held] = true
					g.stale = append(g.stale, g.held)
				}
			}
			g.held++
			return true, nil
		}
		g.diverge(g.differs(o))
		g.cur = append(g.cur, *o)
		return false, g.takeErr()
	}
	return false, nil
}

// differs says how o differs from the plan's next operation.
func (g *StepGraph) differs(o *op) string {
	if g.held == len(g.plan) {
		return o.String() + " past the plan's end"
	}
	return o.String() + " where the plan has " + g.plan[g.held].String()
}

func (o *op) String() string {
	switch o.kind {
	case opZero:
		return fmt.Sprintf("memset %#x+%d", o.dst, o.bytes)
	case opCopy:
		return fmt.Sprintf("copy %#x+%d to %#x", o.src, o.bytes, o.dst)
	}
	return "kernel " + o.k.Name
}

// settle issues whatever the active step holds back, before something that
// would observe it or overtake it (why).
func settle(why string) error {
	g := active.Load()
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mode != graphHolding {
		return nil
	}
	g.diverge(why)
	return g.takeErr()
}

// settleFor is settle for an upload to dst: only when a held-back operation
// names dst's block (blockOf).
func settleFor(dst Ptr, bytes int64) error {
	g := active.Load()
	if g == nil {
		return nil
	}
	lo, hi := blockOf(dst, bytes)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mode != graphHolding {
		return nil
	}
	for i := range g.plan[:g.held] {
		if g.plan[i].names(lo, hi) {
			g.diverge(fmt.Sprintf("an upload to a block that held-back operation %d (%s) names", i, g.plan[i].String()))
			return g.takeErr()
		}
	}
	return nil
}
