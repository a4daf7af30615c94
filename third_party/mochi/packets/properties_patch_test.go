package packets

import "testing"

// OUTPOST patch test: the canEncode table says what validPacketProperties says.
func TestCanEncodeTable(t *testing.T) {
	var p Properties
	n := 0
	for k := 0; k < 256; k++ {
		for pkt := 0; pkt < 256; pkt++ {
			want := validPacketProperties[byte(k)][byte(pkt)] == 1
			if got := p.canEncode(byte(pkt), byte(k)); got != want {
				t.Fatalf("canEncode(%d, %d) = %v, want %v", pkt, k, got, want)
			}
			if want {
				n++
			}
		}
	}
	if n < 40 {
		t.Fatalf("only %d (property, packet) pairs encodable", n)
	}
}
