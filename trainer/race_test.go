//go:build race

package trainer

// The race detector allocates on its own account, so allocation counts are
// only meaningful without it.
const raceEnabled = true
