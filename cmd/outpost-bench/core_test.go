package main

import (
	"context"
	"io"
	"net"
	"os"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-iot/outpost/certs"
	"github.com/outpost-iot/outpost/internal/mqtttest"
)

// The bench's "mochi" broker: the hub's core serves TLS MQTT to any client,
// token or not, delivers, and stops on its context.
func TestCoreServesAnyClient(t *testing.T) {
	dir := t.TempDir()
	p, err := certs.InitCA(dir, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runCore(ctx, []string{"--listen", addr, "--pki", dir}, io.Discard) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("runCore: %v", err)
			}
		case <-time.After(30 * time.Second):
			// Close waits for every connection's goroutine: one still in
			// its TLS handshake ends at the 10 s handshake deadline at most.
			_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
			t.Error("runCore did not return after its context ended")
		}
	}()

	tc, err := certs.ClientTLS(p.CACert)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	var sub, pub *mqtttest.Client
	for deadline := time.Now().Add(10 * time.Second); ; {
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		sub, err = mqtttest.Dial(dctx, addr, "sub", "", mqtttest.Options{TLS: tc, OnPublish: func(m *paho.Publish) { got <- m.Payload }})
		dcancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("connect without a token: %v", err)
	}
	defer sub.Disconnect(&paho.Disconnect{})
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	if _, err := sub.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "any/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	if pub, err = mqtttest.Dial(sctx, addr, "pub", "not a token", mqtttest.Options{TLS: tc}); err != nil {
		t.Fatalf("connect with a garbage password: %v", err)
	}
	defer pub.Disconnect(&paho.Disconnect{})
	if _, err := pub.Publish(sctx, &paho.Publish{Topic: "any/thing", QoS: 1, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if string(m) != "x" {
			t.Fatalf("delivered %q, want x", m)
		}
	case <-sctx.Done():
		t.Fatal("publish not delivered")
	}
}
