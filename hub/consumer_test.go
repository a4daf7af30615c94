package hub

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-iot/outpost/hub/token"
	"github.com/outpost-iot/outpost/internal/mqtttest"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// A fleet consumer (a wildcard subscription across devices) that stops
// reading for a while loses no QoS 1 message while its backlog fits its
// queue (mqtt.consumer_queue_slots, 1024): with the gateway-sized queue
// (128) the hub dropped deliveries as soon as ten publishers outran one
// subscriber.
func TestSlowConsumerLosesNothingWithinItsQueue(t *testing.T) {
	th := startHub(t, t.TempDir())
	tok, _, err := th.Issue(context.Background(), token.Request{Device: "consumer", Sub: []string{protocol.DeviceTopic("+", protocol.SufLog)}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	// A small receive buffer, so the hub's writes block soon after the
	// consumer stops reading and the backlog builds up in the hub's queue.
	conn := rawConnectWith(t, th, "consumer", tok, func(c syscall.RawConn) {
		_ = c.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	})
	sub := packets.NewControlPacket(packets.SUBSCRIBE)
	sc := sub.Content.(*packets.Subscribe)
	sc.PacketID = 1
	sc.Subscriptions = []packets.SubOptions{{Topic: protocol.DeviceTopic("+", protocol.SufLog), QoS: 1}}
	if _, err := sub.WriteTo(conn); err != nil {
		t.Fatal(err)
	}
	if p, err := packets.ReadPacket(conn); err != nil || p.Type != packets.SUBACK {
		t.Fatalf("SUBACK: %v, %v", p, err)
	}

	// Ten gateways publish 1,000 batches of 50 readings (7.5 MB, more than
	// the socket buffers hold; fewer than the 1,024 unacknowledged deliveries
	// a client may have) while the consumer reads nothing.
	const gws, per, recs = 10, 100, 50
	pad := strings.Repeat("x", 60)
	errs := make(chan error, gws)
	for g := range gws {
		id := fmt.Sprintf("gw-%d", g)
		gt, _ := th.issue(t, id, time.Hour)
		c := th.dial(t, id, gt, mqtttest.Options{})
		go func() {
			for s := uint64(1); s <= per; s++ {
				seqs := make([]uint64, recs)
				for i := range seqs {
					seqs[i] = (s-1)*recs + uint64(i) + 1
				}
				b := []byte(strings.ReplaceAll(string(batch(seqs...)), `"sensor":"tank"`, `"sensor":"tank`+pad+`"`))
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				r, err := c.Publish(ctx, &paho.Publish{Topic: protocol.DeviceTopic(id, protocol.SufLog), QoS: 1, Payload: b})
				cancel()
				if err != nil || r.ReasonCode >= 0x80 {
					// Publishers must not wait on a consumer that does not read.
					errs <- fmt.Errorf("%s batch %d: %v, %+v", id, s, err, r)
					return
				}
			}
			errs <- nil
		}()
	}
	for range gws {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if m := metricsText(t, th); !strings.Contains(m, "outpost_mqtt_messages_dropped_total 0") {
		t.Fatalf("the hub dropped deliveries to the consumer:\n%s", grepLines(m, "dropped"))
	}
	// Now read: every message arrives.
	got := map[string]bool{}
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for len(got) < gws*per {
		p, err := packets.ReadPacket(conn)
		if err != nil {
			t.Fatalf("after %d of %d messages: %v", len(got), gws*per, err)
		}
		pub, ok := p.Content.(*packets.Publish)
		if !ok {
			continue
		}
		bt, err := protocol.DecodeBatch(pub.Payload)
		if err != nil {
			t.Fatal(err)
		}
		got[fmt.Sprintf("%s/%d", pub.Topic, bt.Records[0].Seq)] = true // one batch each
		ack := packets.NewControlPacket(packets.PUBACK)
		ack.Content.(*packets.Puback).PacketID = pub.PacketID
		if _, err := ack.WriteTo(conn); err != nil {
			t.Fatal(err)
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
