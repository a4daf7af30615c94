// Package token issues and verifies Outpost channel tokens: Ed25519-signed
// JWTs bound to one MQTT client id, naming the topic filters the holder may
// publish and subscribe to. Signing keys live in a Keyring that rotates: a new
// key signs, older key ids verify until they are retired.
package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/outpost-iot/outpost/internal/protocol"
)

// Defaults for the registered claims.
const (
	Issuer   = "outpost-hub"
	Audience = "outpost-mqtt"
	Leeway   = 30 * time.Second
	MaxTTL   = 366 * 24 * time.Hour
)

// Verification failures. Malformed and unverifiable tokens are ErrBadToken
// (MQTT 0x86 bad user name or password); verified tokens that may not be used
// here and now are ErrNotAuthorized (MQTT 0x87). Each carries a short reason
// for metrics via Reason.
var (
	ErrBadToken      = errors.New("bad token")
	ErrNotAuthorized = errors.New("token not authorized")
)

// Error is a verification failure with a metric-friendly reason.
type Error struct {
	Kind   error  // ErrBadToken or ErrNotAuthorized
	Reason string // e.g. "expired", "revoked", "bad_signature"
	Err    error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%v: %s: %v", e.Kind, e.Reason, e.Err)
	}
	return fmt.Sprintf("%v: %s", e.Kind, e.Reason)
}

func (e *Error) Unwrap() []error { return []error{e.Kind, e.Err} }

// Reason returns the reason of a verification error, or "other".
func Reason(err error) string {
	var te *Error
	if errors.As(err, &te) {
		return te.Reason
	}
	return "other"
}

func bad(reason string, err error) error { return &Error{Kind: ErrBadToken, Reason: reason, Err: err} }
func denied(reason string, err error) error {
	return &Error{Kind: ErrNotAuthorized, Reason: reason, Err: err}
}

// ACL lists the topic filters a token grants.
type ACL struct {
	Pub []string `json:"pub"`
	Sub []string `json:"sub"`
}

// Claims are the JWT claims of a channel token. Subject is the MQTT client id.
type Claims struct {
	jwt.RegisteredClaims
	ACL ACL `json:"acl"`
}

// CanPublish reports whether the token allows publishing to topic.
func (c *Claims) CanPublish(topic string) bool { return protocol.MatchAny(c.ACL.Pub, topic) }

// CanSubscribe reports whether the token allows subscribing to filter (or
// receiving a message on a topic): some granted filter must cover it.
func (c *Claims) CanSubscribe(filter string) bool { return protocol.CoversAny(c.ACL.Sub, filter) }

// Request describes a token to issue.
type Request struct {
	Device string
	Pub    []string
	Sub    []string
	TTL    time.Duration
}

// Validate reports every problem of the request.
func (r Request) Validate() error {
	var errs []error
	if err := protocol.ValidateDeviceID(r.Device); err != nil {
		errs = append(errs, fmt.Errorf("device: %w", err))
	}
	if r.TTL <= 0 || r.TTL > MaxTTL {
		errs = append(errs, fmt.Errorf("ttl: %v must be > 0 and ≤ %v", r.TTL, MaxTTL))
	}
	if len(r.Pub)+len(r.Sub) == 0 {
		errs = append(errs, errors.New("acl: token grants no topic filter (give pub and/or sub)"))
	}
	for i, f := range r.Pub {
		if err := protocol.ValidateFilter(f); err != nil {
			errs = append(errs, fmt.Errorf("pub[%d]: %w", i, err))
		}
	}
	for i, f := range r.Sub {
		if err := protocol.ValidateFilter(f); err != nil {
			errs = append(errs, fmt.Errorf("sub[%d]: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// Signer is the part of a Keyring that issues tokens.
type Signer interface {
	Active() (kid string, key ed25519.PrivateKey)
}

// KeyLookup finds a verification key by id; ok is false for unknown or retired ids.
type KeyLookup interface {
	Public(kid string) (ed25519.PublicKey, bool)
}

// Issue signs a token for r at time now.
func Issue(s Signer, r Request, now time.Time) (string, *Claims, error) {
	if err := r.Validate(); err != nil {
		return "", nil, fmt.Errorf("token: %w", err)
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", nil, fmt.Errorf("token: jti: %w", err)
	}
	now = now.Truncate(time.Second)
	c := &Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    Issuer,
			Subject:   r.Device,
			Audience:  jwt.ClaimStrings{Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(r.TTL)),
			ID:        hex.EncodeToString(jti[:]),
		},
		ACL: ACL{Pub: nonNil(r.Pub), Sub: nonNil(r.Sub)},
	}
	raw, err := signClaims(s, c)
	if err != nil {
		return "", nil, err
	}
	return raw, c, nil
}

// signClaims signs c with the active key, naming it in the kid header.
func signClaims(s Signer, c jwt.Claims) (string, error) {
	kid, key := s.Active()
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	t.Header["kid"] = kid
	raw, err := t.SignedString(key)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	return raw, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Verifier checks tokens presented at MQTT CONNECT.
type Verifier struct {
	Keys    KeyLookup
	Revoked func(jti string) bool // may be nil
	Now     func() time.Time      // nil means time.Now
}

// Verify parses and checks raw for clientID. It never trusts the token's
// header beyond selecting the key: only EdDSA is accepted.
func (v *Verifier) Verify(raw, clientID string) (*Claims, error) {
	c := &Claims{}
	if err := v.parse(raw, Audience, c); err != nil {
		return nil, err
	}
	if c.ID == "" {
		return nil, bad("malformed", errors.New("no jti"))
	}
	if c.Subject != clientID {
		return nil, denied("client_id_mismatch", fmt.Errorf("token is for %q, client id is %q", c.Subject, clientID))
	}
	if v.Revoked != nil && v.Revoked(c.ID) {
		return nil, denied("revoked", fmt.Errorf("jti %s", c.ID))
	}
	return c, nil
}

// parse verifies raw's signature (EdDSA only, key by kid), issuer, audience
// and times into c.
func (v *Verifier) parse(raw, audience string, c jwt.Claims) error {
	if raw == "" {
		return bad("missing", nil)
	}
	if len(raw) > 8<<10 {
		return bad("malformed", fmt.Errorf("token is %d bytes, at most 8192", len(raw)))
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{"EdDSA"}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithIssuer(Issuer),
		jwt.WithAudience(audience),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(now),
	)
	_, err := p.ParseWithClaims(raw, c, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("no kid in header")
		}
		pub, ok := v.Keys.Public(kid)
		if !ok {
			return nil, fmt.Errorf("unknown kid %q", kid)
		}
		return pub, nil
	})
	if err != nil {
		return classify(raw, err)
	}
	return nil
}

func classify(raw string, err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return denied("expired", err)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return denied("not_yet_valid", err)
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return denied("wrong_audience", err)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return bad("wrong_issuer", err)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return bad("missing_claim", err)
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if t, _, perr := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{}); perr == nil && t.Method.Alg() != "EdDSA" {
			return bad("wrong_alg", err) // alg none, HMAC confusion, RSA …
		}
		return bad("bad_signature", err)
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return bad("unverifiable", err) // unknown kid
	default:
		return bad("malformed", err)
	}
}
