//go:build race

package data

// The race detector slows decompression about twentyfold, so under it the
// real-data tests read only the 10000-image test files.
const raceEnabled = true
