package data

import (
	"slices"
	"testing"
)

// The shards of every batch, taken in rank order, are the unsharded batch:
// the same samples in the same order, a short last batch split evenly.
func TestLoaderShardsPartitionBatches(t *testing.T) {
	for _, tc := range []struct{ n, batch, shards int }{{20, 6, 3}, {20, 6, 2}, {4, 6, 2}, {24, 8, 4}} {
		d := toySet(t, tc.n, 1, 2, 2, 3)
		o := LoaderOptions{BatchSize: tc.batch, Shuffle: true, Seed: 7, Prefetch: -1}
		whole := epochBatches(t, newLoader(t, d, o), 1, 0)
		var parts [][][]int // [shard][batch] indices
		for k := range tc.shards {
			o.Shard, o.Shards = k, tc.shards
			l := newLoader(t, d, o)
			if l.BatchesPerEpoch() != len(whole) {
				t.Fatalf("%+v: shard %d has %d batches, want %d", tc, k, l.BatchesPerEpoch(), len(whole))
			}
			var mine [][]int
			for b := range l.Batches(1, 0) {
				if b.Size() > 0 && (b.X.Dim(0) != b.Size() || len(b.Labels) != b.Size()) {
					t.Fatalf("%+v: shard %d: X %v for %d samples", tc, k, b.X.Shape(), b.Size())
				}
				for j, i := range b.Indices {
					if b.Labels[j] != d.Labels[i] {
						t.Fatalf("%+v: label of sample %d", tc, i)
					}
				}
				mine = append(mine, slices.Clone(b.Indices))
			}
			parts = append(parts, mine)
		}
		for bi, w := range whole {
			var got []int
			sizes := []int{}
			for k := range tc.shards {
				got = append(got, parts[k][bi]...)
				sizes = append(sizes, len(parts[k][bi]))
			}
			if !slices.Equal(got, w.indices) {
				t.Fatalf("%+v: batch %d: shards hold %v, want %v", tc, bi, got, w.indices)
			}
			if slices.Max(sizes)-slices.Min(sizes) > 1 {
				t.Fatalf("%+v: batch %d split unevenly: %v", tc, bi, sizes)
			}
		}
	}
}

func TestLoaderShardsMustDivideBatch(t *testing.T) {
	d := toySet(t, 10, 1, 2, 2, 3)
	if _, err := NewLoader(d, LoaderOptions{BatchSize: 5, Shards: 2}); err == nil {
		t.Fatal("a batch of 5 in 2 shards was accepted")
	}
}
