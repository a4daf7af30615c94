package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func testRing(t *testing.T) *Keyring {
	t.Helper()
	k, err := OpenKeyring(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t *testing.T, method jwt.SigningMethod, key any, kid string, c jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerify(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ring := testRing(t)
	kid, key := ring.Active()
	good, claims, err := Issue(ring, Request{Device: "gw-1", Pub: []string{"outpost/v1/d/gw-1/#"}, Sub: []string{"a/+"}, TTL: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	revokedTok, revokedClaims, _ := Issue(ring, Request{Device: "gw-1", Pub: []string{"x"}, TTL: time.Hour}, now)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)

	base := func(mut func(*Claims)) *Claims {
		c := *claims
		c.ID = "abc"
		if mut != nil {
			mut(&c)
		}
		return &c
	}
	pub := key.Public().(ed25519.PublicKey)
	v := &Verifier{Keys: ring, Revoked: func(jti string) bool { return jti == revokedClaims.ID }, Now: func() time.Time { return now }}

	cases := []struct {
		name, raw, client string
		kind              error
		reason            string
	}{
		{"good", good, "gw-1", nil, ""},
		{"empty", "", "gw-1", ErrBadToken, "missing"},
		{"garbage", "not.a.jwt", "gw-1", ErrBadToken, "malformed"},
		{"binary garbage", "\x00\xff\x10", "gw-1", ErrBadToken, "malformed"},
		{"bad signature", good[:len(good)-4] + "AAAA", "gw-1", ErrBadToken, "bad_signature"},
		{"other key same kid", sign(t, jwt.SigningMethodEdDSA, otherKey, kid, base(nil)), "gw-1", ErrBadToken, "bad_signature"},
		{"unknown kid", sign(t, jwt.SigningMethodEdDSA, otherKey, "deadbeef", base(nil)), "gw-1", ErrBadToken, "unverifiable"},
		{"no kid", sign(t, jwt.SigningMethodEdDSA, key, "", base(nil)), "gw-1", ErrBadToken, "unverifiable"},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kid, base(nil)), "gw-1", ErrBadToken, "wrong_alg"},
		{"hmac confusion", sign(t, jwt.SigningMethodHS256, []byte(pub), kid, base(nil)), "gw-1", ErrBadToken, "wrong_alg"},
		{"expired", sign(t, jwt.SigningMethodEdDSA, key, kid, base(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Minute)) })), "gw-1", ErrNotAuthorized, "expired"},
		{"no exp", sign(t, jwt.SigningMethodEdDSA, key, kid, base(func(c *Claims) { c.ExpiresAt = nil })), "gw-1", ErrBadToken, "missing_claim"},
		{"not yet valid", sign(t, jwt.SigningMethodEdDSA, key, kid, base(func(c *Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) })), "gw-1", ErrNotAuthorized, "not_yet_valid"},
		{"wrong audience", sign(t, jwt.SigningMethodEdDSA, key, kid, base(func(c *Claims) { c.Audience = jwt.ClaimStrings{"other"} })), "gw-1", ErrNotAuthorized, "wrong_audience"},
		{"wrong issuer", sign(t, jwt.SigningMethodEdDSA, key, kid, base(func(c *Claims) { c.Issuer = "evil" })), "gw-1", ErrBadToken, "wrong_issuer"},
		{"client id mismatch", good, "gw-2", ErrNotAuthorized, "client_id_mismatch"},
		{"revoked", revokedTok, "gw-1", ErrNotAuthorized, "revoked"},
		{"huge", strings.Repeat("a", 9000), "gw-1", ErrBadToken, "malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(tc.raw, tc.client)
			if tc.kind == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if c.Subject != "gw-1" || !c.CanPublish("outpost/v1/d/gw-1/log") || c.CanPublish("outpost/v1/d/gw-2/log") {
					t.Fatalf("claims wrong: %+v", c)
				}
				if !c.CanSubscribe("a/b") || !c.CanSubscribe("a/+") || c.CanSubscribe("a/#") || c.CanSubscribe("#") {
					t.Fatalf("subscribe ACL wrong: %+v", c.ACL)
				}
				return
			}
			if !errors.Is(err, tc.kind) {
				t.Fatalf("err = %v, want kind %v", err, tc.kind)
			}
			if r := Reason(err); r != tc.reason {
				t.Fatalf("reason = %q, want %q (err %v)", r, tc.reason, err)
			}
		})
	}
}

func TestRotateAndRetire(t *testing.T) {
	dir := t.TempDir()
	ring, err := OpenKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	oldKid, _ := ring.Active()
	oldTok, _, err := Issue(ring, Request{Device: "d1", Pub: []string{"x"}, TTL: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	newKid, err := ring.Rotate()
	if err != nil || newKid == oldKid {
		t.Fatalf("rotate: %v %q", err, newKid)
	}
	// Reopen: state survives.
	ring, err = OpenKeyring(dir)
	if err != nil {
		t.Fatal(err)
	}
	if kid, _ := ring.Active(); kid != newKid {
		t.Fatalf("active after reopen = %q, want %q", kid, newKid)
	}
	v := &Verifier{Keys: ring}
	if _, err := v.Verify(oldTok, "d1"); err != nil {
		t.Fatalf("old kid should verify before retirement: %v", err)
	}
	if err := ring.Retire(newKid); err == nil {
		t.Fatal("retiring the active key must fail")
	}
	if err := ring.Retire(oldKid); err != nil {
		t.Fatal(err)
	}
	ring, _ = OpenKeyring(dir)
	v.Keys = ring
	if _, err := v.Verify(oldTok, "d1"); Reason(err) != "unverifiable" {
		t.Fatalf("retired kid: err = %v", err)
	}
	if len(ring.List()) != 2 {
		t.Fatalf("list = %+v", ring.List())
	}
}

func TestRequestValidate(t *testing.T) {
	err := Request{Device: "bad id!", Pub: []string{"a/#/b"}, Sub: []string{"x+"}, TTL: -1}.Validate()
	for _, want := range []string{"device:", "ttl:", "pub[0]:", "sub[0]:"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want mention of %q", err, want)
		}
	}
}

func TestClaimTokens(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	ring := testRing(t)
	revoked := ""
	v := &Verifier{Keys: ring, Revoked: func(jti string) bool { return jti == revoked }, Now: func() time.Time { return now }}
	claim, cc, err := IssueClaim(ring, time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	channel, _, err := Issue(ring, Request{Device: "gw-1", Pub: []string{"x"}, TTL: time.Hour}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !IsClaimToken(claim) || IsClaimToken(channel) || IsClaimToken("garbage") {
		t.Fatal("IsClaimToken picks the wrong path")
	}
	got, err := v.VerifyClaim(claim)
	if err != nil || got.ID != cc.ID || got.Subject != "claim:"+cc.ID {
		t.Fatalf("VerifyClaim: %+v %v", got, err)
	}
	// A claim token is never a channel token, for any client id, and vice versa.
	for _, client := range []string{"gw-1", cc.Subject, cc.ID} {
		if _, err := v.Verify(claim, client); !errors.Is(err, ErrNotAuthorized) || Reason(err) != "wrong_audience" {
			t.Errorf("claim token as channel token for %q: %v", client, err)
		}
	}
	if _, err := v.VerifyClaim(channel); Reason(err) != "wrong_audience" {
		t.Errorf("channel token as claim token: %v", err)
	}
	// A token with the claim audience but not shaped like a claim token.
	kid, key := ring.Active()
	odd := *cc
	odd.Subject = "gw-1"
	if _, err := v.VerifyClaim(sign(t, jwt.SigningMethodEdDSA, key, kid, &odd)); Reason(err) != "not_a_claim_token" {
		t.Errorf("claim audience with a device subject: %v", err)
	}
	v.Now = func() time.Time { return now.Add(2 * time.Hour) }
	if _, err := v.VerifyClaim(claim); !errors.Is(err, ErrNotAuthorized) || Reason(err) != "expired" {
		t.Errorf("expired claim: %v", err)
	}
	v.Now = func() time.Time { return now }
	revoked = cc.ID
	if _, err := v.VerifyClaim(claim); !errors.Is(err, ErrNotAuthorized) || Reason(err) != "revoked" {
		t.Errorf("revoked claim: %v", err)
	}
	if _, _, err := IssueClaim(ring, MaxClaimTTL+time.Second, now); err == nil {
		t.Error("claim ttl beyond the maximum accepted")
	}
}
