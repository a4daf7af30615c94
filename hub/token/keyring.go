package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/outpost-iot/outpost/internal/fsx"
)

// Keyring holds the hub's token signing keys in a directory: one PEM file per
// key (<kid>.key, 0600) and state.json naming the active key and the retired
// ones. It is safe for concurrent use.
type Keyring struct {
	dir string

	mu      sync.RWMutex
	keys    map[string]ed25519.PrivateKey
	active  string
	retired []string
}

type ringState struct {
	Active  string   `json:"active"`
	Retired []string `json:"retired"`
}

// OpenKeyring loads the keyring in dir, creating it with one fresh key if it
// does not exist.
func OpenKeyring(dir string) (*Keyring, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	k := &Keyring{dir: dir, keys: map[string]ed25519.PrivateKey{}}
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		if _, err := k.Rotate(); err != nil {
			return nil, err
		}
		return k, nil
	case err != nil:
		return nil, fmt.Errorf("keyring: %w", err)
	}
	var st ringState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("keyring: %s: %w", filepath.Join(dir, "state.json"), err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.key"))
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	for _, f := range files {
		key, err := readKey(f)
		if err != nil {
			return nil, err
		}
		k.keys[KeyID(key.Public().(ed25519.PublicKey))] = key
	}
	if _, ok := k.keys[st.Active]; !ok {
		return nil, fmt.Errorf("keyring: active key %q has no key file in %s", st.Active, dir)
	}
	k.active, k.retired = st.Active, st.Retired
	return k, nil
}

func readKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("keyring: %s: no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("keyring: %s: %w", path, err)
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("keyring: %s: not an Ed25519 key", path)
	}
	return ek, nil
}

// KeyID is the first 8 bytes of the SHA-256 of the public key, in hex.
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return hex.EncodeToString(h[:8])
}

// Rotate creates a new key and makes it the active signer. Earlier keys keep
// verifying until retired.
func (k *Keyring) Rotate() (string, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("keyring: %w", err)
	}
	kid := KeyID(key.Public().(ed25519.PublicKey))
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("keyring: %w", err)
	}
	path := filepath.Join(k.dir, kid+".key")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return "", fmt.Errorf("keyring: %w", err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys[kid] = key
	prev := k.active
	k.active = kid
	if err := k.saveLocked(); err != nil {
		k.active = prev
		return "", err
	}
	return kid, nil
}

// Retire stops accepting tokens signed with kid. The active key cannot be retired.
func (k *Keyring) Retire(kid string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.keys[kid]; !ok {
		return fmt.Errorf("keyring: unknown key %q", kid)
	}
	if kid == k.active {
		return fmt.Errorf("keyring: %q is the active key: rotate first", kid)
	}
	if !slices.Contains(k.retired, kid) {
		k.retired = append(k.retired, kid)
	}
	return k.saveLocked()
}

func (k *Keyring) saveLocked() error {
	b, err := json.MarshalIndent(ringState{Active: k.active, Retired: k.retired}, "", "  ")
	if err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	if err := fsx.WriteFileAtomic(filepath.Join(k.dir, "state.json"), b, 0o600); err != nil {
		return fmt.Errorf("keyring: %w", err)
	}
	return nil
}

// Active returns the signing key.
func (k *Keyring) Active() (string, ed25519.PrivateKey) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.active, k.keys[k.active]
}

// Public returns the verification key for kid unless it is unknown or retired.
func (k *Keyring) Public(kid string) (ed25519.PublicKey, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	key, ok := k.keys[kid]
	if !ok || slices.Contains(k.retired, kid) {
		return nil, false
	}
	return key.Public().(ed25519.PublicKey), true
}

// KeyInfo describes one key of the ring.
type KeyInfo struct {
	ID      string `json:"kid"`
	Active  bool   `json:"active"`
	Retired bool   `json:"retired"`
}

// List returns every key of the ring.
func (k *Keyring) List() []KeyInfo {
	k.mu.RLock()
	defer k.mu.RUnlock()
	var out []KeyInfo
	for id := range k.keys {
		out = append(out, KeyInfo{ID: id, Active: id == k.active, Retired: slices.Contains(k.retired, id)})
	}
	slices.SortFunc(out, func(a, b KeyInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}
