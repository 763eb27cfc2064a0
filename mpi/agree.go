package mpi

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DisagreeError says which ranks hold bytes that differ from rank 0's.
// Every rank gets the same error.
type DisagreeError struct {
	What   string   // what was compared, for the message
	Ranks  []int    // the ranks that differ from rank 0, ascending
	Values [][]byte // every rank's bytes, by rank
}

func (e *DisagreeError) Error() string {
	names := make([]string, len(e.Ranks))
	for i, r := range e.Ranks {
		names[i] = fmt.Sprintf("rank %d has %s", r, short(e.Values[r]))
	}
	return fmt.Sprintf("mpi: ranks disagree on %s: rank 0 has %s, %s",
		e.What, short(e.Values[0]), strings.Join(names, ", "))
}

// RankValues is every rank's bytes and the ranks whose bytes differ from
// rank 0's.
func (e *DisagreeError) RankValues() (values [][]byte, differ []int) { return e.Values, e.Ranks }

// short prints a short text as it is ("cpu"), other bytes as at most 8 in
// hex: enough to tell hashes apart in a log line.
func short(b []byte) string {
	if len(b) > 0 && len(b) <= 40 && utf8.Valid(b) && !bytes.ContainsFunc(b, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(string(b))
	}
	if len(b) > 8 {
		return fmt.Sprintf("%x… (%d bytes)", b[:8], len(b))
	}
	return fmt.Sprintf("%x", b)
}

// Agree checks that every rank passed the same bytes (a hash of the
// configuration, binary and data set, say): nil everywhere when they match,
// the same *DisagreeError on every rank when they do not. Collective.
func (w *World) Agree(what string, value []byte) error {
	all, err := w.AllgatherBytes(value)
	if err != nil {
		return err
	}
	var differ []int
	for r := 1; r < len(all); r++ {
		if !bytes.Equal(all[r], all[0]) {
			differ = append(differ, r)
		}
	}
	if len(differ) == 0 {
		return nil
	}
	return &DisagreeError{What: what, Ranks: differ, Values: all}
}
