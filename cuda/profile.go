package cuda

import (
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// The kernel profiler (issue 17): between StartProfile and StopProfile each
// launch is timed on the device between two marks (CUDA events on the
// stream on a GPU; on the emulator, whose launches run to completion before
// they return, the host clock), the host time from one launch's return to
// the next launch is summed, and the device-to-host copies (each one a wait
// for the device), the uploads and the memsets are counted. The marks cost a
// little device and host time per launch: profile a few steps apart from the
// timed ones.

// KernelTime is one kernel's part of a profile.
type KernelTime struct {
	Name     string
	Launches int
	Device   time.Duration // summed over its launches
}

// Profile is what the device did between StartProfile and StopProfile.
type Profile struct {
	Kernels  []KernelTime // by device time, the largest first
	Launches int
	Copies   int // device-to-host copies
	Uploads  int // host-to-device copies
	Memsets  int
	Device   time.Duration // the kernels' device time, summed
	HostGaps time.Duration // host time between a launch's return and the next launch
	Wall     time.Duration // StartProfile to StopProfile
}

// mark is a backend's point on the stream (a CUDA event, or the emulator's
// clock reading).
type mark uintptr

type launchRecord struct {
	k          *Kernel
	start, end mark
}

// profiling says a profile runs; it changes only under prof's lock, and
// Launch reads it without the lock.
var profiling atomic.Bool

var prof struct {
	sync.Mutex
	records    []launchRecord
	copies     int
	uploads    int
	memsets    int
	hostGaps   time.Duration
	started    time.Time
	lastReturn time.Time
}

// StartProfile starts recording every launch.
func StartProfile() error {
	if err := ready(); err != nil {
		return err
	}
	if err := settle("the profiler's start"); err != nil { // a held-back step would escape the profile
		return err
	}
	prof.Lock()
	defer prof.Unlock()
	if profiling.Load() {
		return errors.New("cuda: a profile is already running")
	}
	prof.records, prof.copies, prof.uploads, prof.memsets, prof.hostGaps = prof.records[:0], 0, 0, 0, 0
	prof.started, prof.lastReturn = time.Now(), time.Time{}
	profiling.Store(true)
	return nil
}

// StopProfile waits for the device and returns the profile since
// StartProfile.
func StopProfile() (Profile, error) {
	prof.Lock()
	defer prof.Unlock()
	if !profiling.Load() {
		return Profile{}, errors.New("cuda: no profile is running")
	}
	profiling.Store(false)
	defer releaseMarks()
	if err := be.sync(); err != nil {
		return Profile{}, err
	}
	p := Profile{Launches: len(prof.records), Copies: prof.copies, Uploads: prof.uploads, Memsets: prof.memsets,
		HostGaps: prof.hostGaps, Wall: time.Since(prof.started)}
	byName := map[string]*KernelTime{}
	for _, r := range prof.records {
		d, err := be.between(r.start, r.end)
		if err != nil {
			return Profile{}, err
		}
		kt := byName[r.k.Name]
		if kt == nil {
			kt = &KernelTime{Name: r.k.Name}
			byName[r.k.Name] = kt
		}
		kt.Launches++
		kt.Device += d
		p.Device += d
	}
	for _, kt := range byName {
		p.Kernels = append(p.Kernels, *kt)
	}
	sort.Slice(p.Kernels, func(i, j int) bool {
		a, b := p.Kernels[i], p.Kernels[j]
		return a.Device > b.Device || a.Device == b.Device && a.Name < b.Name
	})
	return p, nil
}

func releaseMarks() {
	for _, r := range prof.records {
		be.dropMark(r.start)
		be.dropMark(r.end)
	}
	prof.records = prof.records[:0]
}

// profiledLaunch is Launch's call of the backend while a profile runs.
func profiledLaunch(launch func() error, k *Kernel) error {
	prof.Lock()
	defer prof.Unlock()
	if !profiling.Load() { // stopped since Launch looked
		return launch()
	}
	now := time.Now()
	if !prof.lastReturn.IsZero() {
		prof.hostGaps += now.Sub(prof.lastReturn)
	}
	defer func() { prof.lastReturn = time.Now() }()
	start, err := be.mark()
	if err != nil {
		return err
	}
	if err := launch(); err != nil {
		be.dropMark(start)
		return err
	}
	end, err := be.mark()
	if err != nil {
		be.dropMark(start)
		return err
	}
	prof.records = append(prof.records, launchRecord{k, start, end})
	return nil
}

// count adds one to n, a counter of prof (copies, uploads or memsets), if a
// profile runs.
func count(n *int) {
	if !profiling.Load() {
		return
	}
	prof.Lock()
	if profiling.Load() {
		*n++
	}
	prof.Unlock()
}
