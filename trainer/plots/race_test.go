//go:build race

package plots

// raceEnabled: the race detector makes MNIST's decompression take 15 s, so
// the tests train on a generated set of the same shape instead.
const raceEnabled = true
