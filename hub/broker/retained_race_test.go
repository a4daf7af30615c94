package broker

import (
	"sync"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// The hub publishes and withdraws retained OTA notices while gateways
// subscribe to their d/{id}/in/# with a wildcard, which scans the retained
// messages. Unpatched mochi read a topic's retain path without the lock
// its writer holds: a data race (and a torn string) that the OTA
// end-to-end test caught in the hub. Run with -race.
func TestRetainedIndexScanWhileRetaining(t *testing.T) {
	x := mqtt.NewTopicsIndex()
	const topic = "outpost/v1/d/gw-1/in/ota"
	start := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		<-start
		for i := range 20000 {
			pk := packets.Packet{TopicName: topic, FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true}}
			if i%2 == 0 {
				pk.Payload = []byte(`{"v":1}`) // a notice; odd: its withdrawal
			}
			x.RetainMessage(pk)
		}
	}()
	go func() {
		defer wg.Done()
		<-start
		for range 20000 {
			for _, pk := range x.Messages("outpost/v1/d/gw-1/in/#") {
				if pk.TopicName != topic {
					t.Errorf("retained message on %q", pk.TopicName)
					return
				}
			}
		}
	}()
	close(start)
	wg.Wait()
}
