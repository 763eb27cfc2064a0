package data

import "math/bits"

// The random numbers here are counter-based SplitMix64 streams written out in
// full, not math/rand, so a seed means the same shuffle, subset and angles on
// every Go release and platform.

// Stream domains keep the uses of one seed independent.
const (
	domainShuffle uint64 = iota + 1
	domainSubset
	domainVal
	domainRotation
	domainAugment
	domainCSVTest
)

func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// key combines a seed, a domain and two counters into one well-mixed value.
func key(seed, domain, a, b uint64) uint64 {
	h := mix64(seed + 0x9e3779b97f4a7c15*domain)
	h = mix64(h ^ (a + 0x632be59bd9b4e019))
	return mix64(h ^ (b + 0x85157af5a0b9e1e7))
}

// stream is a SplitMix64 generator.
type stream struct{ state uint64 }

func newStream(seed, domain, a, b uint64) stream { return stream{state: key(seed, domain, a, b)} }

func (s *stream) next() uint64 {
	s.state += 0x9e3779b97f4a7c15
	return mix64(s.state)
}

// intn returns a value in [0, n) (multiply-high reduction; the bias, n/2⁶⁴, is
// far below anything observable).
func (s *stream) intn(n int) int {
	hi, _ := bits.Mul64(s.next(), uint64(n))
	return int(hi)
}

// float64 returns a value in [0, 1).
func (s *stream) float64() float64 { return float64(s.next()>>11) / (1 << 53) }

// permute fills p with a uniformly random permutation of 0..len(p)-1
// (Fisher–Yates).
func (s *stream) permute(p []int) {
	for i := range p {
		p[i] = i
	}
	for i := len(p) - 1; i > 0; i-- {
		j := s.intn(i + 1)
		p[i], p[j] = p[j], p[i]
	}
}
