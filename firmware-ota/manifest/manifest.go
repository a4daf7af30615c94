package manifest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
	"unicode"
	"unicode/utf8"
)

// Format constants.
const (
	FormatVersion   = 1                                // the envelope's "v"
	SignContext     = "outpost-firmware-manifest-v1\n" // prefixed to the payload before signing
	ManifestSuffix  = ".manifest.json"                 // appended to the artifact path
	MaxManifestSize = 64 << 10                         // bytes of a signed manifest file
	MaxNotesLen     = 16 << 10                         // bytes of Manifest.Notes
)

// Sentinel errors. Every error from VerifyManifest, Verify and CheckArtifact
// wraps one of these (or an fs error for a missing or unreadable file).
var (
	ErrMalformed      = errors.New("malformed manifest")
	ErrUnknownKey     = errors.New("manifest signed by an untrusted key")
	ErrBadSignature   = errors.New("bad manifest signature")
	ErrSizeMismatch   = errors.New("artifact size mismatch")
	ErrDigestMismatch = errors.New("artifact SHA-256 mismatch")
)

// Manifest describes one firmware artifact. Its JSON form is the signed
// payload (see the package documentation).
type Manifest struct {
	Version Version   `json:"version"`
	Target  Target    `json:"target"`
	Size    int64     `json:"size"`            // artifact length in bytes, > 0
	SHA256  string    `json:"sha256"`          // artifact digest, 64 lower-case hex digits
	Created time.Time `json:"created"`         // signing time, UTC, whole seconds
	Notes   string    `json:"notes,omitempty"` // release notes, UTF-8, at most MaxNotesLen bytes
	KeyID   string    `json:"kid"`             // id of the signing key
}

// Validate reports the first problem with m.
func (m *Manifest) Validate() error {
	if err := m.Target.Validate(); err != nil {
		return err
	}
	switch {
	case m.Size <= 0:
		return fmt.Errorf("manifest: %w: size %d: want a positive number of bytes", ErrMalformed, m.Size)
	case !isHex(m.SHA256, 64):
		return fmt.Errorf("manifest: %w: sha256 %q: want 64 lower-case hex digits", ErrMalformed, m.SHA256)
	case m.Created.IsZero():
		return fmt.Errorf("manifest: %w: created is missing", ErrMalformed)
	case !isHex(m.KeyID, 16):
		return fmt.Errorf("manifest: %w: kid %q: want 16 lower-case hex digits", ErrMalformed, m.KeyID)
	case len(m.Notes) > MaxNotesLen:
		return fmt.Errorf("manifest: %w: notes are %d bytes, at most %d allowed", ErrMalformed, len(m.Notes), MaxNotesLen)
	case !utf8.ValidString(m.Notes):
		return fmt.Errorf("manifest: %w: notes are not valid UTF-8", ErrMalformed)
	}
	for _, r := range m.Notes {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return fmt.Errorf("manifest: %w: notes contain control character %U", ErrMalformed, r)
		}
	}
	return nil
}

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// envelope is the signed manifest file.
type envelope struct {
	V       int    `json:"v"`
	KeyID   string `json:"kid"`
	Payload []byte `json:"payload"`
	Sig     []byte `json:"sig"`
}

// Member names that may appear in an envelope and in a payload; anything
// else, including a differently-cased spelling, is rejected.
var (
	envelopeKeys = map[string]bool{"v": true, "kid": true, "payload": true, "sig": true}
	payloadKeys  = map[string]bool{
		"version": true, "target": true, "size": true, "sha256": true, "created": true, "notes": true, "kid": true,
		"os": true, "arch": true, "variant": true, "board": true,
	}
)

// SignManifest signs m with key and returns the manifest file's bytes. It
// sets m.KeyID from key, sets a zero m.Created to the current time and
// validates m; Size and SHA256 must describe the artifact (Sign fills them
// in from a file).
func SignManifest(key ed25519.PrivateKey, m Manifest) ([]byte, error) {
	_, out, err := signManifest(key, m)
	return out, err
}

// signManifest is SignManifest that also returns the manifest as signed.
func signManifest(key ed25519.PrivateKey, m Manifest) (Manifest, []byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return m, nil, fmt.Errorf("manifest: sign: private key is %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	m.KeyID = KeyID(key.Public().(ed25519.PublicKey))
	if m.Created.IsZero() {
		m.Created = time.Now()
	}
	m.Created = m.Created.UTC().Truncate(time.Second)
	if err := m.Validate(); err != nil {
		return m, nil, err
	}
	payload, err := json.Marshal(&m)
	if err != nil {
		return m, nil, fmt.Errorf("manifest: sign: %w", err)
	}
	env := envelope{
		V:       FormatVersion,
		KeyID:   m.KeyID,
		Payload: payload,
		Sig:     ed25519.Sign(key, signedBytes(payload)),
	}
	out, err := json.MarshalIndent(&env, "", "  ")
	if err != nil {
		return m, nil, fmt.Errorf("manifest: sign: %w", err)
	}
	out = append(out, '\n')
	if len(out) > MaxManifestSize {
		return m, nil, fmt.Errorf("manifest: sign: %w: signed manifest would be %d bytes, at most %d allowed", ErrMalformed, len(out), MaxManifestSize)
	}
	return m, out, nil
}

// signedBytes returns exactly what the signature covers.
func signedBytes(payload []byte) []byte {
	return append([]byte(SignContext), payload...)
}

// Sign hashes the artifact at artifactPath (streaming), signs a manifest
// for it with key and writes it to artifactPath+ManifestSuffix, replacing
// any previous manifest atomically. version must be a semantic version
// (ParseVersion).
func Sign(key ed25519.PrivateKey, artifactPath, version string, target Target, notes string) (Manifest, error) {
	v, err := ParseVersion(version)
	if err != nil {
		return Manifest{}, err
	}
	f, err := os.Open(artifactPath)
	if err != nil {
		return Manifest{}, fmt.Errorf("manifest: sign: %w", err)
	}
	defer func() { _ = f.Close() }() // read-only: Close cannot lose data
	if fi, err := f.Stat(); err != nil {
		return Manifest{}, fmt.Errorf("manifest: sign: %w", err)
	} else if !fi.Mode().IsRegular() {
		return Manifest{}, fmt.Errorf("manifest: sign: %s is not a regular file", artifactPath)
	}
	n, sum, err := digest(f, -1)
	if err != nil {
		return Manifest{}, fmt.Errorf("manifest: sign: read %s: %w", artifactPath, err)
	}
	if n == 0 {
		return Manifest{}, fmt.Errorf("manifest: sign: %s is empty", artifactPath)
	}
	m, out, err := signManifest(key, Manifest{Version: v, Target: target, Size: n, SHA256: hex.EncodeToString(sum), Notes: notes})
	if err != nil {
		return Manifest{}, err
	}
	if err := writeFiles([]file{{Path: artifactPath + ManifestSuffix, Data: out, Mode: 0o644}}, true); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// VerifyManifest verifies a signed manifest (the bytes of an
// ARTIFACT.manifest.json, or the same carried in an OTA notice) against
// the trusted keys and returns it. It does not check an artifact; use
// CheckArtifact or Verify for that.
func VerifyManifest(keys *Keyring, data []byte) (Manifest, error) {
	if len(data) > MaxManifestSize {
		return Manifest{}, fmt.Errorf("manifest: %w: %d bytes, at most %d allowed", ErrMalformed, len(data), MaxManifestSize)
	}
	env, err := decodeEnvelope(data)
	if err != nil {
		return Manifest{}, err
	}
	pub, err := keys.lookup(env.KeyID)
	if err != nil {
		return Manifest{}, err
	}
	if !ed25519.Verify(pub, signedBytes(env.Payload), env.Sig) {
		return Manifest{}, fmt.Errorf("manifest: %w: signature does not verify with key %s", ErrBadSignature, env.KeyID)
	}
	m, err := decodePayload(env.Payload)
	if err != nil {
		return Manifest{}, err
	}
	if m.KeyID != env.KeyID {
		return Manifest{}, fmt.Errorf("manifest: %w: signed kid %s differs from envelope kid %s", ErrMalformed, m.KeyID, env.KeyID)
	}
	return m, nil
}

// Verify reads artifactPath+ManifestSuffix, verifies it with
// VerifyManifest and checks that the artifact at artifactPath has the
// manifest's size and SHA-256 (streaming). It returns the manifest only if
// everything holds. Install the bytes that were verified: an updater that
// reopens the file afterwards should verify while copying, with
// CheckArtifact.
func Verify(keys *Keyring, artifactPath string) (Manifest, error) {
	mpath := artifactPath + ManifestSuffix
	data, err := readLimited(mpath, MaxManifestSize, ErrMalformed)
	if err != nil {
		return Manifest{}, err
	}
	m, err := VerifyManifest(keys, data)
	if err != nil {
		return Manifest{}, fmt.Errorf("%w (in %s)", err, mpath)
	}
	f, err := os.Open(artifactPath)
	if err != nil {
		return Manifest{}, fmt.Errorf("manifest: verify: %w", err)
	}
	defer func() { _ = f.Close() }() // read-only: Close cannot lose data
	fi, err := f.Stat()
	if err != nil {
		return Manifest{}, fmt.Errorf("manifest: verify: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Manifest{}, fmt.Errorf("manifest: verify: %s is not a regular file", artifactPath)
	}
	if fi.Size() != m.Size { // cheap early answer; CheckArtifact counts again
		return Manifest{}, fmt.Errorf("manifest: verify %s: %w: artifact is %d bytes, manifest says %d", artifactPath, ErrSizeMismatch, fi.Size(), m.Size)
	}
	if err := CheckArtifact(m, f); err != nil {
		return Manifest{}, fmt.Errorf("%w (in %s)", err, artifactPath)
	}
	return m, nil
}

// CheckArtifact reads r to its end, or to one byte past m.Size, and checks
// that it has exactly m.Size bytes with SHA-256 m.SHA256. m must come from
// VerifyManifest or Verify.
func CheckArtifact(m Manifest, r io.Reader) error {
	want, err := hex.DecodeString(m.SHA256)
	if err != nil || len(want) != sha256.Size || m.Size <= 0 {
		return fmt.Errorf("manifest: check artifact: %w: size %d, sha256 %q", ErrMalformed, m.Size, m.SHA256)
	}
	n, sum, err := digest(r, m.Size+1)
	if err != nil {
		return fmt.Errorf("manifest: check artifact: %w", err)
	}
	switch {
	case n > m.Size:
		return fmt.Errorf("manifest: check artifact: %w: artifact is longer than the %d bytes the manifest says", ErrSizeMismatch, m.Size)
	case n < m.Size:
		return fmt.Errorf("manifest: check artifact: %w: artifact is %d bytes, manifest says %d", ErrSizeMismatch, n, m.Size)
	case !bytes.Equal(sum, want):
		return fmt.Errorf("manifest: check artifact: %w: artifact has %x, manifest says %s", ErrDigestMismatch, sum, m.SHA256)
	}
	return nil
}

// digest hashes r, at most limit bytes if limit >= 0.
func digest(r io.Reader, limit int64) (int64, []byte, error) {
	h := sha256.New()
	if limit >= 0 {
		r = io.LimitReader(r, limit)
	}
	n, err := io.Copy(h, r)
	return n, h.Sum(nil), err
}

// decodeEnvelope strictly decodes a signed manifest file without verifying it.
func decodeEnvelope(data []byte) (envelope, error) {
	var env envelope
	if err := strictUnmarshal(data, envelopeKeys, &env); err != nil {
		return env, fmt.Errorf("manifest: %w: %w", ErrMalformed, err)
	}
	switch {
	case env.V != FormatVersion:
		return env, fmt.Errorf("manifest: %w: format version %d, this program reads %d", ErrMalformed, env.V, FormatVersion)
	case !isHex(env.KeyID, 16):
		return env, fmt.Errorf("manifest: %w: kid %q: want 16 lower-case hex digits", ErrMalformed, env.KeyID)
	case len(env.Payload) == 0:
		return env, fmt.Errorf("manifest: %w: payload is missing", ErrMalformed)
	case len(env.Sig) != ed25519.SignatureSize:
		return env, fmt.Errorf("manifest: %w: signature is %d bytes, want %d", ErrMalformed, len(env.Sig), ed25519.SignatureSize)
	}
	return env, nil
}

// decodePayload strictly decodes and validates a manifest payload.
func decodePayload(payload []byte) (Manifest, error) {
	var m Manifest
	if !utf8.Valid(payload) {
		return m, fmt.Errorf("manifest: %w: payload is not valid UTF-8", ErrMalformed)
	}
	if err := strictUnmarshal(payload, payloadKeys, &m); err != nil {
		return Manifest{}, fmt.Errorf("manifest: %w: payload: %w", ErrMalformed, err)
	}
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// strictUnmarshal decodes exactly one JSON object into v, rejecting member
// names that are not fields of v (DisallowUnknownFields) or not spelled
// exactly as one of allowed (encoding/json would otherwise match them
// case-insensitively), duplicate member names, and anything after the
// object.
func strictUnmarshal(data []byte, allowed map[string]bool, v any) error {
	if len(data) > MaxManifestSize {
		return fmt.Errorf("%d bytes, at most %d allowed", len(data), MaxManifestSize)
	}
	if err := checkMembers(data, allowed); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	return nil
}

// maxDepth bounds nesting; a manifest nests two objects deep.
const maxDepth = 8

// checkMembers walks every token of data: one JSON value, nested at most
// maxDepth deep, objects whose member names are all in allowed and unique.
func checkMembers(data []byte, allowed map[string]bool) error {
	type frame struct {
		object    bool
		expectKey bool
		seen      map[string]bool
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var stack []*frame
	values := 0 // complete top-level values
	valueDone := func() {
		if len(stack) == 0 {
			values++
		} else if top := stack[len(stack)-1]; top.object {
			top.expectKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		if values > 0 {
			return errors.New("data after the top-level JSON value")
		}
		if d, ok := tok.(json.Delim); ok {
			if (d == '{' || d == '[') && len(stack) == maxDepth {
				return fmt.Errorf("nested deeper than %d", maxDepth)
			}
			switch d {
			case '{':
				stack = append(stack, &frame{object: true, expectKey: true, seen: map[string]bool{}})
			case '[':
				stack = append(stack, &frame{})
			default: // '}' or ']'
				stack = stack[:len(stack)-1]
				valueDone()
			}
			continue
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].expectKey {
			top := stack[n-1]
			key := tok.(string) // json.Decoder only yields strings as member names
			if !allowed[key] {
				return fmt.Errorf("unknown member %q", key)
			}
			if top.seen[key] {
				return fmt.Errorf("duplicate member %q", key)
			}
			top.seen[key] = true
			top.expectKey = false
			continue
		}
		valueDone()
	}
	if values != 1 {
		return io.ErrUnexpectedEOF
	}
	return nil
}
