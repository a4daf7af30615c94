package manifest

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Key file names written by Keygen.
const (
	PrivateKeyFile = "release.key"
	PublicKeyFile  = "release.pub"
)

// MaxKeyFile bounds what we read from a key file.
const MaxKeyFile = 64 << 10

// KeyID returns the key id of pub: the first 8 bytes of the SHA-256 of the
// raw 32-byte public key, as 16 lower-case hex digits.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Keygen creates a release key pair in dir (created 0700 if missing):
// release.key (PKCS #8 PEM, 0600) and release.pub (PKIX PEM, 0644). Unless
// force is true it refuses to overwrite either file and writes neither;
// the error names the file and wraps fs.ErrExist. It returns the key id.
func Keygen(dir string, force bool) (kid string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("manifest: keygen: %w", err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", fmt.Errorf("manifest: keygen: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("manifest: keygen: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("manifest: keygen: %w", err)
	}
	err = writeFiles([]file{
		{Path: filepath.Join(dir, PrivateKeyFile), Data: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), Mode: 0o600},
		{Path: filepath.Join(dir, PublicKeyFile), Data: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), Mode: 0o644},
	}, force)
	if err != nil {
		return "", err
	}
	return KeyID(pub), nil
}

// LoadPrivateKey reads an Ed25519 private key from a PKCS #8 PEM file such
// as release.key.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := readLimited(path, MaxKeyFile, nil)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("manifest: %s: want a PEM \"PRIVATE KEY\" block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("manifest: %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("manifest: %s: key is %T, want Ed25519", path, k)
	}
	return priv, nil
}

// ParsePublicKeys parses one or more PEM "PUBLIC KEY" blocks (PKIX
// Ed25519), such as release.pub or several of them concatenated. Text
// outside the blocks is ignored; at least one block is required.
func ParsePublicKeys(pemData []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for {
		var b *pem.Block
		b, pemData = pem.Decode(pemData)
		if b == nil {
			break
		}
		if b.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("manifest: PEM block %d is %q, want PUBLIC KEY", len(keys)+1, b.Type)
		}
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("manifest: public key %d: %w", len(keys)+1, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("manifest: public key %d is %T, want Ed25519", len(keys)+1, k)
		}
		keys = append(keys, pub)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("manifest: no PEM PUBLIC KEY block")
	}
	return keys, nil
}

// Keyring is an immutable set of trusted release public keys, indexed by
// key id. Trusting several keys at once allows rotating the release key.
type Keyring struct {
	keys map[string]ed25519.PublicKey
}

// NewKeyring returns a keyring trusting pubs.
func NewKeyring(pubs ...ed25519.PublicKey) (*Keyring, error) {
	k := &Keyring{keys: make(map[string]ed25519.PublicKey, len(pubs))}
	for i, pub := range pubs {
		if len(pub) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("manifest: public key %d is %d bytes, want %d", i+1, len(pub), ed25519.PublicKeySize)
		}
		k.keys[KeyID(pub)] = slices.Clone(pub)
	}
	return k, nil
}

// LoadKeyring returns a keyring trusting every public key in the PEM files
// at paths (see ParsePublicKeys).
func LoadKeyring(paths ...string) (*Keyring, error) {
	var all []ed25519.PublicKey
	for _, p := range paths {
		data, err := readLimited(p, MaxKeyFile, nil)
		if err != nil {
			return nil, err
		}
		keys, err := ParsePublicKeys(data)
		if err != nil {
			return nil, fmt.Errorf("%w (in %s)", err, p)
		}
		all = append(all, keys...)
	}
	return NewKeyring(all...)
}

// KeyIDs returns the ids of the trusted keys, sorted.
func (k *Keyring) KeyIDs() []string {
	if k == nil {
		return nil
	}
	ids := make([]string, 0, len(k.keys))
	for id := range k.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// lookup returns the trusted key with id kid.
func (k *Keyring) lookup(kid string) (ed25519.PublicKey, error) {
	if k != nil {
		if pub, ok := k.keys[kid]; ok {
			return pub, nil
		}
	}
	trusted := "none"
	if ids := k.KeyIDs(); len(ids) > 0 {
		trusted = strings.Join(ids, ", ")
	}
	return nil, fmt.Errorf("manifest: %w: kid %s (trusted: %s)", ErrUnknownKey, kid, trusted)
}
