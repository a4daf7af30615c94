package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-iot/outpost/hub/api"
	"github.com/outpost-iot/outpost/hub/store"
	"github.com/outpost-iot/outpost/hub/token"
	"github.com/outpost-iot/outpost/internal/mqtttest"
	"github.com/outpost-iot/outpost/internal/protocol"
)

func (th *testHub) createClaim(t *testing.T, q api.ClaimRequest) api.ClaimResponse {
	t.Helper()
	var resp api.ClaimResponse
	if st := th.api(t, "POST", "/api/v1/claims", q, &resp); st != 201 || resp.Token == "" {
		t.Fatalf("create claim: status %d %+v", st, resp)
	}
	return resp
}

// claimant is a claim session with its response subscription.
type claimant struct {
	*mqtttest.Client
	id    string
	resps chan *paho.Publish
}

func (th *testHub) claimSession(t *testing.T, id, claim string) *claimant {
	t.Helper()
	resps := make(chan *paho.Publish, 8)
	c := th.dial(t, id, claim, mqtttest.Options{KeepAlive: 30, OnPublish: func(p *paho.Publish) { resps <- p }})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: protocol.ClaimTopic(id, protocol.SufClaimResp), QoS: 1}}})
	if err != nil || sa.Reasons[0] != 1 {
		t.Fatalf("subscribe to own claim response topic: %v %v", sa, err)
	}
	return &claimant{Client: c, id: id, resps: resps}
}

func (c *claimant) announce(t *testing.T) protocol.ClaimResponse {
	t.Helper()
	corr := fmt.Sprintf("c-%d", time.Now().UnixNano())
	b, _ := json.Marshal(protocol.ClaimRequest{V: 1, Device: c.id, Firmware: "1.2.3", Board: "test board", Arch: "linux/arm64"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Publish(ctx, &paho.Publish{Topic: protocol.ClaimTopic(c.id, protocol.SufClaimReq), QoS: 1, Payload: b,
		Properties: &paho.PublishProperties{ResponseTopic: protocol.ClaimTopic(c.id, protocol.SufClaimResp), CorrelationData: []byte(corr)}})
	if err != nil || (r != nil && r.ReasonCode != 0) {
		t.Fatalf("announce: %v %v", r, err)
	}
	select {
	case p := <-c.resps:
		if p.Properties == nil || string(p.Properties.CorrelationData) != corr || p.Retain {
			t.Fatalf("claim response: correlation %v, retained %v", p.Properties, p.Retain)
		}
		resp, err := protocol.DecodeClaimResponse(p.Payload)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	case <-time.After(5 * time.Second):
		t.Fatal("no claim response within 5 s")
		return protocol.ClaimResponse{}
	}
}

func refusedWith(t *testing.T, th *testHub, id, tok string, want byte) {
	t.Helper()
	c, err := mqtttest.Dial(context.Background(), th.addrs.MQTT, id, tok, mqtttest.Options{TLS: th.tls})
	if err == nil {
		_ = c.Disconnect(&paho.Disconnect{})
		t.Fatalf("%s: connect accepted", id)
	}
	if c == nil || c.Connack == nil || c.Connack.ReasonCode != want {
		t.Fatalf("%s: %v; want CONNACK 0x%02x", id, err, want)
	}
}

func TestClaimAdmissionACLAndAutoAccept(t *testing.T) {
	th := startHub(t, t.TempDir())
	cr := th.createClaim(t, api.ClaimRequest{TTL: "1h", Labels: map[string]string{"site": "north"}})
	if cr.Claim.Uses != 1 || cr.Claim.Labels["site"] != "north" || cr.KeyID == "" {
		t.Fatalf("claim record: %+v", cr)
	}
	c := th.claimSession(t, "pi-1", cr.Token)

	// A claim session is not a device being online.
	if _, err := th.Store().Device(context.Background(), "pi-1"); err == nil {
		t.Fatal("a claim session created a device")
	}
	// It may use its own claim topics only.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: protocol.ClaimTopic("pi-2", protocol.SufClaimResp), QoS: 1}, {Topic: "outpost/v1/d/pi-1/in/#", QoS: 1},
		{Topic: "outpost/v1/claim/#", QoS: 1}, {Topic: protocol.TopicFleetOTA, QoS: 1},
	}})
	if err != nil && sa == nil {
		t.Fatal(err)
	}
	if fmt.Sprint(sa.Reasons) != "[135 135 135 135]" {
		t.Fatalf("SUBACK %v, want every filter refused", sa.Reasons)
	}
	req := func(dev string) []byte { b, _ := json.Marshal(protocol.ClaimRequest{V: 1, Device: dev}); return b }
	for _, tc := range []struct {
		name, topic string
		payload     []byte
		want        byte
	}{
		{"device log", protocol.DeviceTopic("pi-1", protocol.SufLog), batch(1), 0x87},
		{"token refresh", protocol.DeviceTopic("pi-1", protocol.SufTokenReq), []byte(`{"v":1}`), 0x87},
		{"another's claim", protocol.ClaimTopic("pi-2", protocol.SufClaimReq), req("pi-2"), 0x87},
		{"own response topic", protocol.ClaimTopic("pi-1", protocol.SufClaimResp), []byte(`{}`), 0x87},
		{"malformed", protocol.ClaimTopic("pi-1", protocol.SufClaimReq), []byte(`{"v":1,"device":"pi-1","x":1}`), 0x99},
		{"other device id", protocol.ClaimTopic("pi-1", protocol.SufClaimReq), req("pi-2"), 0x99},
	} {
		if rc := publish(t, c.Client, tc.topic, tc.payload); rc != tc.want {
			t.Errorf("%s: PUBACK 0x%02x, want 0x%02x", tc.name, rc, tc.want)
		}
	}

	resp := c.announce(t)
	if resp.Status != protocol.ClaimAccepted || resp.Device != "pi-1" || resp.Expires <= time.Now().Unix() {
		t.Fatalf("announce: %+v", resp)
	}
	// Idempotent until expiry: the same device announcing again gets a token again.
	again := c.announce(t)
	if again.Status != protocol.ClaimAccepted || again.Token == "" {
		t.Fatalf("second announce: %+v", again)
	}
	d, err := th.Store().Device(context.Background(), "pi-1")
	if err != nil || d.Labels["site"] != "north" {
		t.Fatalf("registered device: %+v %v", d, err)
	}
	if d.State == "online" {
		t.Fatal("a claim session shows as online")
	}

	// The channel token works as one; the claim token is refused for another id.
	dev := th.dial(t, "pi-1", resp.Token, mqtttest.Options{KeepAlive: 30})
	if rc := publish(t, dev, protocol.DeviceTopic("pi-1", protocol.SufLog), batch(1, 2)); rc != 0 {
		t.Fatalf("log with the claimed token: PUBACK 0x%02x", rc)
	}
	// A channel token cannot announce.
	if rc := publish(t, dev, protocol.ClaimTopic("pi-1", protocol.SufClaimReq), req("pi-1")); rc != 0x87 {
		t.Errorf("channel token announcing: PUBACK 0x%02x, want 0x87", rc)
	}
	refusedWith(t, th, "pi-2", cr.Token, 0x87)
	// Neither token works as the other kind: a channel token as a claim token
	// is a channel token for its own id only; a claim token's own "sub" is no client id.
	refusedWith(t, th, "pi-2", resp.Token, 0x87)
	refusedWith(t, th, "claim_"+cr.Claim.ID, cr.Token, 0x87)
	v := &token.Verifier{Keys: th.ring}
	if _, err := v.Verify(cr.Token, "pi-1"); token.Reason(err) != "wrong_audience" {
		t.Errorf("claim token as channel token: %v", err)
	}
	if _, err := v.VerifyClaim(resp.Token); token.Reason(err) != "wrong_audience" {
		t.Errorf("channel token as claim token: %v", err)
	}
	var list struct {
		Claims []store.Claim `json:"claims"`
	}
	if st := th.api(t, "GET", "/api/v1/claims", nil, &list); st != 200 || len(list.Claims) != 1 || len(list.Claims[0].Devices) != 1 ||
		list.Claims[0].Devices[0].Device != "pi-1" || list.Claims[0].Devices[0].Board != "test board" {
		t.Fatalf("claims: %d %+v", st, list)
	}
}

func TestClaimRefusals(t *testing.T) {
	th := startHub(t, t.TempDir())
	ctx := context.Background()
	now := time.Now()
	// Expired by its JWT, expired by its record, revoked, unknown, foreign.
	jwtExpired, jc, _ := token.IssueClaim(th.ring, time.Minute, now.Add(-time.Hour))
	recExpired, rc, _ := token.IssueClaim(th.ring, time.Hour, now)
	for _, c := range []store.Claim{
		{ID: jc.ID, CreatedMS: jc.IssuedAt.UnixMilli(), ExpiresMS: jc.ExpiresAt.UnixMilli(), Uses: 1},
		{ID: rc.ID, CreatedMS: now.UnixMilli(), ExpiresMS: now.Add(-time.Second).UnixMilli(), Uses: 1},
	} {
		if err := th.Store().InsertClaim(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	unknown, _, _ := token.IssueClaim(th.ring, time.Hour, now)
	other, _ := token.OpenKeyring(t.TempDir())
	foreign, _, _ := token.IssueClaim(other, time.Hour, now)

	revoked := th.createClaim(t, api.ClaimRequest{})
	live := th.claimSession(t, "pi-5", revoked.Token)
	var out struct {
		ConnectionsCut int `json:"connections_cut"`
	}
	if st := th.api(t, "DELETE", "/api/v1/claims/"+revoked.Claim.ID, nil, &out); st != 200 || out.ConnectionsCut != 1 {
		t.Fatalf("revoke claim: %d %+v", st, out)
	}
	select {
	case <-live.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("a revoked claim's session is still open")
	}
	for _, tc := range []struct {
		name, tok string
		want      byte
	}{
		{"expired jwt", jwtExpired, 0x87},
		{"expired record", recExpired, 0x87},
		{"revoked", revoked.Token, 0x87},
		{"unknown claim", unknown, 0x87},
		{"foreign key", foreign, 0x86},
	} {
		t.Run(tc.name, func(t *testing.T) { refusedWith(t, th, "pi-5", tc.tok, tc.want) })
	}
	body := metricsText(t, th)
	for _, want := range []string{`reason="claim_unknown"`, `reason="expired"`, `reason="revoked"`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestClaimPendingAcceptReject(t *testing.T) {
	th := startHub(t, t.TempDir(), func(c *Config) { c.Claims.AutoAccept = false })
	cr := th.createClaim(t, api.ClaimRequest{Uses: 2, Labels: map[string]string{"model": "pi4"}})
	a := th.claimSession(t, "pi-a", cr.Token)
	b := th.claimSession(t, "pi-b", cr.Token)
	for _, c := range []*claimant{a, b} {
		if r := c.announce(t); r.Status != protocol.ClaimPending || r.Retry != 15 || r.Token != "" {
			t.Fatalf("%s: %+v, want pending", c.id, r)
		}
	}
	// Both uses are taken: a third device id is refused.
	refusedWith(t, th, "pi-c", cr.Token, 0x87)
	var pending struct {
		Devices []store.ClaimDevice `json:"devices"`
	}
	if st := th.api(t, "GET", "/api/v1/devices?state=pending", nil, &pending); st != 200 || len(pending.Devices) != 2 ||
		pending.Devices[0].State != "pending" || pending.Devices[0].Firmware != "1.2.3" {
		t.Fatalf("pending: %d %+v", st, pending)
	}
	if st := th.api(t, "POST", "/api/v1/devices/pi-a/accept", nil, nil); st != 200 {
		t.Fatalf("accept: %d", st)
	}
	if st := th.api(t, "POST", "/api/v1/devices/pi-b/reject", nil, nil); st != 200 {
		t.Fatalf("reject: %d", st)
	}
	if st := th.api(t, "POST", "/api/v1/devices/pi-b/accept", nil, nil); st != 404 {
		t.Fatalf("accepting a device that is not pending: %d, want 404", st)
	}
	if r := a.announce(t); r.Status != protocol.ClaimAccepted || r.Token == "" {
		t.Fatalf("accepted device: %+v", r)
	}
	if r := b.announce(t); r.Status != protocol.ClaimRejected || r.Reason == "" {
		t.Fatalf("rejected device: %+v", r)
	}
	if d, err := th.Store().Device(context.Background(), "pi-a"); err != nil || d.Labels["model"] != "pi4" {
		t.Fatalf("accepted device: %+v %v", d, err)
	}
	if _, err := th.Store().Device(context.Background(), "pi-b"); err == nil {
		t.Fatal("a rejected device exists")
	}
	if st := th.api(t, "GET", "/api/v1/devices?state=pending", nil, &pending); st != 200 || len(pending.Devices) != 0 {
		t.Fatalf("pending after deciding: %+v", pending)
	}
}
