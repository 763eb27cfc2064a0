package tbevents

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kiln-ml/kiln/internal/userfile/userfiletest"
)

// A record header whose length CRC checks out is still only a claim: a
// 12-byte file that says a gigabyte follows costs nothing but an error.
func TestReadRecordsTrustsNoLength(t *testing.T) {
	l := binary.LittleEndian.AppendUint64(nil, 1<<30)
	rec := binary.LittleEndian.AppendUint32(l, MaskedCRC(l))
	rec = append(rec, "a few bytes"...)
	var err error
	alloc, _ := userfiletest.Allocated(func() error {
		_, err = ReadRecords(bytes.NewReader(rec))
		return err
	})
	if !errors.Is(err, ErrTruncated) {
		t.Errorf("a record claiming 1 GiB in %d bytes: %v, want ErrTruncated", len(rec), err)
	}
	if alloc > 1<<20 {
		t.Errorf("%d bytes allocated for a %d-byte input", alloc, len(rec))
	}
}

func TestReadFileRefusesWhatIsNotARegularFile(t *testing.T) {
	for _, s := range userfiletest.Specials(t) {
		err := userfiletest.Promptly(t, 5*time.Second, func() error {
			_, err := ReadFile(s.Path)
			return err
		})
		if err == nil || !strings.Contains(err.Error(), s.Path) || !strings.Contains(err.Error(), s.Kind) {
			t.Errorf("ReadFile(%s) = %v, want an error naming it %s", s.Path, err, s.Kind)
		}
	}
}
