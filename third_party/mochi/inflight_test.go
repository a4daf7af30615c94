package mqtt

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// OUTPOST patch test: Inflight keeps pointers and reuses deleted entries;
// neither may leak one packet into another, or a clone into its original.
func TestInflightReuse(t *testing.T) {
	i := NewInflights()
	if !i.Set(packets.Packet{PacketID: 1, Payload: []byte("a")}) {
		t.Fatal("Set of a new id reported an update")
	}
	if i.Set(packets.Packet{PacketID: 1, Payload: []byte("b")}) {
		t.Fatal("Set of an existing id reported a new entry")
	}
	if m, ok := i.Get(1); !ok || string(m.Payload) != "b" {
		t.Fatalf("Get(1) = %q, %v; want b", m.Payload, ok)
	}
	c := i.Clone()
	if !i.Delete(1) || i.Delete(1) {
		t.Fatal("Delete(1) twice: want true, then false")
	}
	i.Set(packets.Packet{PacketID: 2, Payload: []byte("c")}) // reuses 1's entry
	if m, ok := c.Get(1); !ok || string(m.Payload) != "b" {
		t.Fatalf("clone's Get(1) = %q, %v after the original reused the entry; want b", m.Payload, ok)
	}
	if _, ok := i.Get(1); ok {
		t.Fatal("deleted id 1 still there")
	}
	if m, ok := i.Get(2); !ok || string(m.Payload) != "c" {
		t.Fatalf("Get(2) = %q, %v; want c", m.Payload, ok)
	}
	m, _ := i.Get(2)
	m.Payload[0] = 'x' // a copy's fields may alias, the entry itself is not replaced
	i.Delete(2)
	i.Set(packets.Packet{PacketID: 3})
	if m, _ := i.Get(3); m.Payload != nil {
		t.Fatalf("a reused entry kept the old payload %q", m.Payload)
	}
	if all := i.GetAll(false); len(all) != 1 || all[0].PacketID != 3 {
		t.Fatalf("GetAll = %+v, want packet 3 only", all)
	}
	for id := uint16(10); id < 10+2*maxFree; id++ {
		i.Set(packets.Packet{PacketID: id})
	}
	for id := uint16(10); id < 10+2*maxFree; id++ {
		i.Delete(id)
	}
	if len(i.free) > maxFree {
		t.Fatalf("%d free entries kept, at most %d", len(i.free), maxFree)
	}
}
