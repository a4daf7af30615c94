package frame

import (
	"errors"
	"testing"
)

func TestRoundTripAndTorn(t *testing.T) {
	b, start := Begin(nil)
	b = AppendString(b, "gw-1")
	b = AppendBytes(b, []byte{1, 2})
	b = End(b, start)
	b, start = Begin(b)
	b = End(append(b, 7), start)
	p, rest, err := Next(b, 64)
	firstRest := rest
	if err != nil {
		t.Fatal(err)
	}
	r := NewReader(p)
	if s, q := string(r.Bytes()), r.Bytes(); s != "gw-1" || len(q) != 2 || r.Err() != nil {
		t.Fatalf("fields %q %v, %v", s, q, r.Err())
	}
	if p, rest, err = Next(rest, 64); err != nil || len(p) != 1 || len(rest) != 0 {
		t.Fatalf("second entry %v %v %v", p, rest, err)
	}
	firstLen := len(b) - len(firstRest)
	for cut := 0; cut < firstLen; cut++ {
		if _, _, err := Next(b[:cut], 64); !errors.Is(err, ErrTorn) {
			t.Fatalf("entry cut at %d of %d: %v, want ErrTorn", cut, firstLen, err)
		}
	}
	bad := append([]byte(nil), b...)
	bad[9] ^= 1
	if _, _, err := Next(bad, 64); !errors.Is(err, ErrTorn) {
		t.Fatalf("flipped bit: %v", err)
	}
	if _, _, err := Next(b, 3); !errors.Is(err, ErrTorn) {
		t.Fatalf("entry over max: %v", err)
	}
	r = NewReader([]byte{0x80})
	if r.Uvarint(); r.Err() == nil {
		t.Fatal("truncated varint read without error")
	}
}
