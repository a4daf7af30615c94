package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// DefaultSessionTTL is how long a dashboard session lasts after login
// (absolute, not sliding): a working day, then log in again.
const DefaultSessionTTL = 12 * time.Hour

// maxSessions bounds the store; logging in beyond it evicts the session
// closest to expiry. Only a holder of the admin token can create sessions.
const maxSessions = 1024

// session is one logged-in browser. The map key is the SHA-256 of the
// cookie value, so the store never holds a usable session id.
type session struct {
	csrf    string
	expires time.Time
	ended   context.Context // done when the session is deleted (logout, eviction, expiry)
	end     context.CancelFunc
}

// sessions is the server-side session store, in memory: a restart logs
// everyone out, which is the safe direction.
type sessions struct {
	mu  sync.Mutex
	m   map[[32]byte]session
	ttl time.Duration
	now func() time.Time
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{m: map[[32]byte]session{}, ttl: ttl, now: now}
}

// random256 returns 256 random bits, base64url without padding.
func random256() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session and returns its id (the cookie value) and state.
func (s *sessions) create() (string, session) {
	id := random256()
	ss := session{csrf: random256(), expires: s.now().Add(s.ttl)}
	ss.ended, ss.end = context.WithCancel(context.Background())
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked()
	if len(s.m) >= maxSessions {
		var oldest [32]byte
		var at time.Time
		for k, v := range s.m {
			if at.IsZero() || v.expires.Before(at) {
				oldest, at = k, v.expires
			}
		}
		s.m[oldest].end()
		delete(s.m, oldest)
	}
	s.m[sha256.Sum256([]byte(id))] = ss
	return id, ss
}

// get returns the live session for id; an expired one is deleted.
func (s *sessions) get(id string) (session, bool) {
	if id == "" || len(id) > 64 {
		return session{}, false
	}
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.m[k]
	if !ok {
		return session{}, false
	}
	if !s.now().Before(ss.expires) {
		ss.end()
		delete(s.m, k)
		return session{}, false
	}
	return ss, true
}

// delete ends the session id.
func (s *sessions) delete(id string) {
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss, ok := s.m[k]; ok {
		ss.end()
		delete(s.m, k)
	}
}

func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *sessions) sweepLocked() {
	now := s.now()
	for k, v := range s.m {
		if !now.Before(v.expires) {
			v.end()
			delete(s.m, k)
		}
	}
}

// validCSRF compares a presented synchronizer token with the session's in
// constant time (over hashes, so not even the length leaks).
func (ss session) validCSRF(presented string) bool {
	if presented == "" {
		return false
	}
	a := sha256.Sum256([]byte(presented))
	b := sha256.Sum256([]byte(ss.csrf))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// equalSecret compares two secrets in constant time over their hashes.
func equalSecret(presented, want string) bool {
	if presented == "" || want == "" {
		return false
	}
	a := sha256.Sum256([]byte(presented))
	b := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
