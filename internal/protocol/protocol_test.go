package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	cases := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"#", "a/b", true},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"a/+/c", "a//c", true},
		{"+", "", true},
		{"a/b/", "a/b/", true},
		{"a/b/", "a/b", false},
		{"a", "a/b", false},
	}
	for _, c := range cases {
		if got := Match(c.filter, c.topic); got != c.want {
			t.Errorf("Match(%q, %q) = %v, want %v", c.filter, c.topic, got, c.want)
		}
	}
}

func TestCovers(t *testing.T) {
	cases := []struct {
		granted, sub string
		want         bool
	}{
		{"a/#", "a/b/+", true},
		{"a/#", "a/#", true},
		{"a/#", "#", false},
		{"a/+", "a/b", true},
		{"a/+", "a/+", true},
		{"a/+", "a/#", false},
		{"a/b", "a/+", false},
		{"a", "a/#", false},
		{"a/+/c", "a/+/c", true},
		{"#", "anything/#", true},
	}
	for _, c := range cases {
		if got := Covers(c.granted, c.sub); got != c.want {
			t.Errorf("Covers(%q, %q) = %v, want %v", c.granted, c.sub, got, c.want)
		}
	}
}

func TestGatewayGrantsAreValid(t *testing.T) {
	pub, sub := GatewayGrants("gw-1")
	for _, f := range append(pub, sub...) {
		if err := ValidateFilter(f); err != nil {
			t.Errorf("%q: %v", f, err)
		}
	}
	if !MatchAny(sub, DeviceTopic("gw-1", SufInOTA)) || MatchAny(sub, DeviceTopic("gw-2", SufInOTA)) {
		t.Error("gateway subscribe grants wrong")
	}
	if MatchAny(pub, DeviceTopic("gw-1", SufInOTA)) {
		t.Error("a gateway must not publish on its own in/ topics")
	}
}

func TestValidateDeviceID(t *testing.T) {
	for _, ok := range []string{"gw-1", "a", "Tank_3.b", strings.Repeat("x", 64)} {
		if err := ValidateDeviceID(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", ".a", "a/b", "a+b", "a#", "a b", strings.Repeat("x", 65), "é"} {
		if err := ValidateDeviceID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDecodeBatchErrors(t *testing.T) {
	cases := map[string]string{
		`{"v":1,"records":[]}`: "no records",
		`{"v":1,"records":[{"seq":2,"kind":"reading","t":5,"sensor":"a","value":1},{"seq":2,"kind":"reading","t":5,"sensor":"a","value":1}]}`: "not greater",
		`{"v":1,"records":[{"seq":1,"kind":"reading","t":5,"sensor":"a"}]}`:                                                                   "without value",
		`{"v":1,"records":[{"seq":1,"kind":"nope","t":5,"sensor":"a"}]}`:                                                                      "kind",
		`{"v":1,"records":[{"seq":1,"kind":"alert","t":5,"alert":{"rule":"r","state":"x"}}]}`:                                                 "alert.state",
		`{"v":1,"records":[{"seq":1,"kind":"fault","t":5,"sensor":"a"}]}`:                                                                     "fault.cause",
		`{"v":1,"records":[{"seq":1,"kind":"fault","t":5,"sensor":"outbox","fault":{"cause":"dropped","seqs":{"first":9,"last":3}}}]}`:        "fault.seqs",
		`{"v":1,"records":[{"seq":1,"kind":"fault","t":5,"sensor":"outbox","fault":{"cause":"dropped","seqs":{"first":0,"last":3}}}]}`:        "fault.seqs",
		`{"v":1,"records":[{"seq":1,"kind":"reading","t":0,"sensor":"a","value":1}]}`:                                                         "unix ms",
		`{"v":1,"records":[{"seq":1,"kind":"reading","clock":"mono","sensor":"a","value":1}]}`:                                                "boot",
		`{"v":1,"records":[{"seq":1,"kind":"reading","t":5,"sensor":"a","value":1}]} {}`:                                                      "trailing",
		`[]`: "cannot unmarshal",
	}
	for in, want := range cases {
		_, err := DecodeBatch([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeBatch(%s) = %v, want ErrInvalid mentioning %q", in, err, want)
		}
	}
	big := make([]byte, MaxPayload+1)
	if _, err := DecodeBatch(big); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("oversize: %v", err)
	}
}

func TestBatchRoundTrip(t *testing.T) {
	v := 7.25
	in := Batch{V: 1, Records: []Record{
		{Seq: 1, Kind: KindReading, Time: 1700000000000, Sensor: "ph", Value: &v, Unit: "pH"},
		{Seq: 2, Kind: KindAlert, Time: 1700000000001, Sensor: "ph", Alert: &Alert{Rule: "ph-high", State: AlertRaised, Value: 7.25, Labels: map[string]string{"site": "a"}}},
		{Seq: 3, Kind: KindFault, Clock: ClockMono, Boot: "b1", MonoMS: 5, Sensor: "t1", Fault: &Fault{Cause: "crc"}},
		{Seq: 4, Kind: KindFault, Time: 1700000000002, Sensor: "outbox", Fault: &Fault{Cause: "dropped", Seqs: &SeqRange{First: 2, Last: 3}}},
	}}
	b, _ := json.Marshal(in)
	out, err := DecodeBatch(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := json.Marshal(out)
	if string(b) != string(b2) {
		t.Fatalf("round trip changed:\n%s\n%s", b, b2)
	}
}

func FuzzDecodeBatch(f *testing.F) {
	f.Add([]byte(`{"v":1,"records":[{"seq":1,"kind":"reading","t":5,"sensor":"a","value":1}]}`))
	f.Add([]byte(`{"v":1,"records":[{"seq":1,"kind":"alert","t":5,"alert":{"rule":"r","state":"raised","value":1}}]}`))
	f.Add([]byte(`{"v":1,"records":[{"seq":3,"kind":"fault","clock":"mono","boot":"x","mono":4,"sensor":"a","fault":{"cause":"crc"}}]}`))
	f.Add([]byte(`{"v":1,"records":[{"seq":9,"kind":"fault","t":5,"sensor":"outbox","fault":{"cause":"dropped","seqs":{"first":2,"last":8}}}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		bt, err := DecodeBatch(b)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
			return
		}
		// Whatever decodes must re-encode and decode to the same thing.
		b2, err := json.Marshal(bt)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeBatch(b2); err != nil {
			t.Fatalf("re-decode of valid batch failed: %v\n%s", err, b2)
		}
	})
}

func FuzzDecodeOthers(f *testing.F) {
	f.Add([]byte(`{"v":1,"state":"online","epoch":3,"hb_s":10}`))
	f.Add([]byte(`{"v":1,"uptime_s":3,"outbox":0,"sensors":{"a":"ok"}}`))
	f.Add([]byte(`{"v":1,"ttl":"24h"}`))
	f.Add([]byte(`{"v":1,"token":"x","exp":5}`))
	f.Add([]byte(`{"v":1,"rollout":"r1","release":"1.2.0","manifest":{"v":1},"url":"https://hub:8443/a","t":1}`))
	f.Add([]byte(`{"v":1,"rollout":"r1","release":"1.2.0","state":"downloading","bytes":5,"total":10,"t":1}`))
	f.Add([]byte(`{"v":1,"device":"pi-00000000abcd1234","fw":"1.2.0","board":"Raspberry Pi 4 Model B","arch":"linux/arm64"}`))
	f.Add([]byte(`{"v":1,"status":"accepted","device":"gw-1","token":"a.b.c","exp":1795432093}`))
	f.Add([]byte(`{"v":1,"status":"pending","device":"gw-1","retry_s":15,"reason":"waiting for an operator"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, dec := range []func([]byte) error{
			func(b []byte) error { _, err := DecodeStatus(b); return err },
			func(b []byte) error { _, err := DecodeHeartbeat(b); return err },
			func(b []byte) error { _, err := DecodeTokenRequest(b); return err },
			func(b []byte) error { _, err := DecodeTokenResponse(b); return err },
			func(b []byte) error { _, err := DecodeOTANotice(b); return err },
			func(b []byte) error { _, err := DecodeOTAStatus(b); return err },
			func(b []byte) error { _, err := DecodeClaimRequest(b); return err },
			func(b []byte) error { _, err := DecodeClaimResponse(b); return err },
		} {
			if err := dec(b); err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error not ErrInvalid: %v", err)
			}
		}
	})
}

// FuzzMatch checks the matcher against a simple reference implementation.
func FuzzMatch(f *testing.F) {
	f.Add("a/+/c", "a/b/c")
	f.Add("a/#", "a")
	f.Add("#", "$SYS/a")
	f.Add("+/+", "/")
	f.Fuzz(func(t *testing.T, filter, topic string) {
		if ValidateFilter(filter) != nil || ValidateTopic(topic) != nil {
			return
		}
		if got, want := Match(filter, topic), refMatch(filter, topic); got != want {
			t.Fatalf("Match(%q, %q) = %v, reference says %v", filter, topic, got, want)
		}
		// A filter always covers itself, and covering implies matching.
		if !Covers(filter, filter) {
			t.Fatalf("Covers(%q, itself) = false", filter)
		}
		if Covers(filter, topic) && !Match(filter, topic) && topic[0] != '$' {
			t.Fatalf("Covers(%q, %q) but no Match", filter, topic)
		}
	})
}

func refMatch(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	fs, ts := strings.Split(filter, "/"), strings.Split(topic, "/")
	for i, f := range fs {
		if f == "#" {
			return true
		}
		if i >= len(ts) {
			return false
		}
		if f != "+" && f != ts[i] {
			return false
		}
	}
	return len(fs) == len(ts)
}

// FuzzClaim checks that claim payloads that decode survive a round trip and
// that a claim topic parses back to its parts.
func FuzzClaim(f *testing.F) {
	f.Add([]byte(`{"v":1,"device":"gw-1","fw":"1.0.0","arch":"linux/arm/v6"}`), "gw-1")
	f.Add([]byte(`{"v":1,"status":"rejected","device":"gw-1","reason":"claim revoked"}`), "a.b")
	f.Add([]byte(`{"v":1,"device":"-x"}`), "")
	f.Fuzz(func(t *testing.T, b []byte, id string) {
		if r, err := DecodeClaimRequest(b); err == nil {
			b2, _ := json.Marshal(r)
			if r2, err := DecodeClaimRequest(b2); err != nil || r2 != r {
				t.Fatalf("claim request round trip: %v %+v %+v", err, r, r2)
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error not ErrInvalid: %v", err)
		}
		if r, err := DecodeClaimResponse(b); err == nil {
			b2, _ := json.Marshal(r)
			if r2, err := DecodeClaimResponse(b2); err != nil || r2 != r {
				t.Fatalf("claim response round trip: %v %+v %+v", err, r, r2)
			}
		} else if !errors.Is(err, ErrInvalid) {
			t.Fatalf("error not ErrInvalid: %v", err)
		}
		if ValidateDeviceID(id) == nil {
			for _, suf := range []string{SufClaimReq, SufClaimResp} {
				if gid, gsuf, ok := ParseClaimTopic(ClaimTopic(id, suf)); !ok || gid != id || gsuf != suf {
					t.Fatalf("ParseClaimTopic(ClaimTopic(%q, %q)) = %q %q %v", id, suf, gid, gsuf, ok)
				}
			}
			pub, sub := ClaimGrants(id)
			if !MatchAny(pub, ClaimTopic(id, SufClaimReq)) || MatchAny(pub, ClaimTopic(id, SufClaimResp)) || !CoversAny(sub, ClaimTopic(id, SufClaimResp)) {
				t.Fatalf("claim grants of %q wrong: %v %v", id, pub, sub)
			}
		}
	})
}
