package hub

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-iot/outpost/internal/mqtttest"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// rawConnect opens a TLS connection and completes CONNECT/CONNACK by hand,
// so the test holds no goroutine of its own for the connection.
func rawConnect(t *testing.T, th *testHub, id, tok string) net.Conn {
	t.Helper()
	return rawConnectWith(t, th, id, tok, nil)
}

// rawConnectWith is rawConnect with a hook on the socket before it connects.
func rawConnectWith(t *testing.T, th *testHub, id, tok string, control func(syscall.RawConn)) net.Conn {
	t.Helper()
	cfg := th.tls.Clone()
	cfg.ServerName = "127.0.0.1"
	d := &net.Dialer{Timeout: 5 * time.Second}
	if control != nil {
		d.Control = func(_, _ string, c syscall.RawConn) error { control(c); return nil }
	}
	conn, err := tls.DialWithDialer(d, "tcp", th.addrs.MQTT, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ProtocolName, c.ProtocolVersion, c.KeepAlive, c.CleanStart = "MQTT", 5, 60, true
	c.ClientID, c.Username, c.UsernameFlag, c.Password, c.PasswordFlag = id, id, true, []byte(tok), true
	if _, err := cp.WriteTo(conn); err != nil {
		t.Fatal(err)
	}
	ack, err := packets.ReadPacket(conn)
	if err != nil {
		t.Fatalf("%s: CONNACK: %v", id, err)
	}
	if ca, ok := ack.Content.(*packets.Connack); !ok || ca.ReasonCode != 0 {
		t.Fatalf("%s: CONNACK %v", id, ack)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn
}

// An idle device costs the hub one goroutine: the one reading its
// connection. The writer starts only when there is something to deliver
// (third_party/mochi: lazy WriteLoop), and the CONNECT was handled on the
// accepting goroutine, which has ended (docs/benchmarks.md, idle memory).
func TestIdleConnectionHoldsOneGoroutine(t *testing.T) {
	th := startHub(t, t.TempDir())
	const n = 40
	toks := make([]string, n)
	for i := range toks {
		toks[i], _ = th.issue(t, fmt.Sprintf("idle-%d", i), time.Hour)
	}
	settle := func() int {
		time.Sleep(300 * time.Millisecond)
		return runtime.NumGoroutine()
	}
	before := settle()
	for i := range n {
		rawConnect(t, th, fmt.Sprintf("idle-%d", i), toks[i])
	}
	waitFor(t, 5*time.Second, "devices online", func() bool {
		d, err := th.Store().Device(context.Background(), fmt.Sprintf("idle-%d", n-1))
		return err == nil && d.State == "online"
	})
	delta := settle() - before
	// n reading goroutines; a few more or fewer may belong to the hub's own
	// work (a store commit in flight, an HTTP connection of the health
	// check). Two per connection (stock mochi) would be 2n.
	if delta < n-3 || delta > n+5 {
		t.Fatalf("%d idle connections added %d goroutines, want %d (one each)", n, delta, n)
	}
}

// A subscriber's writer goroutine exits after a second without deliveries
// and starts again with the next one: nothing is lost across the gap.
func TestDeliveryAfterWriterIdle(t *testing.T) {
	th := startHub(t, t.TempDir())
	tok, _ := th.issue(t, "gw-1", time.Hour)
	var got atomic.Int64
	c := th.dial(t, "gw-1", tok, mqtttest.Options{KeepAlive: 30, OnPublish: func(*paho.Publish) { got.Add(1) }})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: protocol.DeviceTopic("gw-1", "in/#"), QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	topic := protocol.DeviceTopic("gw-1", "in/test")
	for round := 1; round <= 3; round++ {
		for range 5 {
			if err := th.broker.Publish(topic, []byte("x"), false, 1); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 5*time.Second, fmt.Sprintf("round %d delivered", round), func() bool { return got.Load() == int64(5*round) })
		time.Sleep(1500 * time.Millisecond) // past the writer's linger: it exits
	}
}
