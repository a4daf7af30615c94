package broker

import (
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/outpost-iot/outpost/hub/token"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// A will of a connection whose client id has a newer authenticated session
// must not be retained: it would overwrite the newer session's birth. Over
// the network this is a race (mochi sends the old will while the new session
// is being set up), so the decision is tested here directly.
func TestStaleWillIsNotRetained(t *testing.T) {
	b := &Broker{sessions: map[*mqtt.Client]*session{}}
	h := &authHook{b: b}
	old := &mqtt.Client{ID: "gw-1"}
	b.sessions[old] = &session{device: "gw-1"}
	will := mqtt.Will{TopicName: "outpost/v1/d/gw-1/status", Retain: true}

	if w, _ := h.OnWill(old, will); !w.Retain {
		t.Fatal("the only session's will lost its retain flag")
	}
	cur := &mqtt.Client{ID: "gw-1"}
	b.sessions[cur] = &session{device: "gw-1"}
	if w, _ := h.OnWill(old, will); w.Retain {
		t.Fatal("a taken-over session's will is retained over the newer session's birth")
	}
	other := &mqtt.Client{ID: "gw-2"}
	b.sessions[other] = &session{device: "gw-2"}
	if w, _ := h.OnWill(other, will); !w.Retain {
		t.Fatal("another device's session made this will stale")
	}
}

func TestRequireLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{"127.0.0.1:1883": true, "[::1]:1883": true, "localhost:1883": true,
		"0.0.0.0:1883": false, ":1883": false, "10.1.2.3:1883": false, "example.com:1883": false} {
		if err := requireLoopback(addr); (err == nil) != ok {
			t.Errorf("requireLoopback(%q) = %v, want ok=%v", addr, err, ok)
		}
	}
}

// Only a wildcard subscription beyond the client's own subtree makes a
// consumer (a larger outbound queue); a gateway's grants do not.
func TestConsumer(t *testing.T) {
	pub, sub := protocol.GatewayGrants("gw-1")
	for _, c := range []struct {
		sub  []string
		want bool
	}{
		{sub, false},
		{append(sub, protocol.TopicFleetPresence), false},
		{[]string{protocol.DeviceTopic("+", protocol.SufLog)}, true},
		{[]string{protocol.Root + "/#"}, true},
		{[]string{protocol.DeviceTopic("gw-2", protocol.SufLog)}, false},
	} {
		cl := &token.Claims{ACL: token.ACL{Pub: pub, Sub: c.sub}}
		if got := consumer(cl, "gw-1"); got != c.want {
			t.Errorf("consumer(sub %v) = %v, want %v", c.sub, got, c.want)
		}
	}
}
