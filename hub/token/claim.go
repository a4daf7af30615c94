package token

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claim tokens let a new gateway register itself (docs/protocol.md,
// "Claiming"). They are signed by the same keyring as channel tokens but can
// never be taken for one: their audience is ClaimAudience (a channel token
// needs Audience), their subject is "claim:<jti>" (':' is not allowed in a
// device id, so it never equals a client id) and they carry use "claim".
const (
	ClaimAudience      = "outpost-claim"
	ClaimSubjectPrefix = "claim:"
	ClaimUse           = "claim"
	MaxClaimTTL        = 30 * 24 * time.Hour
)

// ClaimClaims are the JWT claims of a claim token.
type ClaimClaims struct {
	jwt.RegisteredClaims
	Use string `json:"use"`
}

// IssueClaim signs a claim token valid for ttl from now.
func IssueClaim(s Signer, ttl time.Duration, now time.Time) (string, *ClaimClaims, error) {
	if ttl <= 0 || ttl > MaxClaimTTL {
		return "", nil, fmt.Errorf("token: claim ttl %v must be > 0 and ≤ %v", ttl, MaxClaimTTL)
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", nil, fmt.Errorf("token: jti: %w", err)
	}
	id := hex.EncodeToString(jti[:])
	now = now.Truncate(time.Second)
	c := &ClaimClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    Issuer,
			Subject:   ClaimSubjectPrefix + id,
			Audience:  jwt.ClaimStrings{ClaimAudience},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			ID:        id,
		},
		Use: ClaimUse,
	}
	raw, err := signClaims(s, c)
	if err != nil {
		return "", nil, err
	}
	return raw, c, nil
}

// IsClaimToken reports whether raw names ClaimAudience, without verifying
// it: the broker uses it to pick the verification path, which then checks
// everything.
func IsClaimToken(raw string) bool {
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(raw, &c); err != nil {
		return false
	}
	for _, a := range c.Audience {
		if a == ClaimAudience {
			return true
		}
	}
	return false
}

// VerifyClaim checks a claim token: signature, issuer, ClaimAudience,
// expiry, use and subject, and the revocation list. Whether it is still
// usable (uses left, bound device) is the claim store's decision.
func (v *Verifier) VerifyClaim(raw string) (*ClaimClaims, error) {
	c := &ClaimClaims{}
	if err := v.parse(raw, ClaimAudience, c); err != nil {
		return nil, err
	}
	if c.ID == "" {
		return nil, bad("malformed", errors.New("no jti"))
	}
	if c.Use != ClaimUse || c.Subject != ClaimSubjectPrefix+c.ID || strings.Count(c.Subject, ":") != 1 {
		return nil, bad("not_a_claim_token", fmt.Errorf("use %q, sub %q", c.Use, c.Subject))
	}
	if v.Revoked != nil && v.Revoked(c.ID) {
		return nil, denied("revoked", fmt.Errorf("claim %s", c.ID))
	}
	return c, nil
}
