package manifest

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// testKey returns a deterministic key, so signatures are reproducible.
func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func pub(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func ring(t testing.TB, keys ...ed25519.PrivateKey) *Keyring {
	t.Helper()
	var pubs []ed25519.PublicKey
	for _, k := range keys {
		pubs = append(pubs, pub(k))
	}
	r, err := NewKeyring(pubs...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var testTarget = Target{OS: "linux", Arch: "arm", Variant: "armv7", Board: "Raspberry Pi 4"}

// artifactBytes is 1 MiB + 3 bytes of patterned data, so hashing streams
// over several buffers and a flipped bit deep inside matters.
func artifactBytes() []byte {
	b := make([]byte, 1<<20+3)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// signedArtifact writes an artifact in a fresh directory and signs it with key.
func signedArtifact(t testing.TB, key ed25519.PrivateKey) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "outpost-gateway-1.4.0-linux-armv7")
	if err := os.WriteFile(path, artifactBytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Sign(key, path, "1.4.0-rc.1+g1a2b3c", testTarget, "Fixes pH drift.\nNew <alert> rules & more."); err != nil {
		t.Fatal(err)
	}
	return path
}

// envelopeJSON makes a signed manifest file from a raw payload, as a
// signer that does not use this package would.
func envelopeJSON(t testing.TB, key ed25519.PrivateKey, kid string, payload []byte) []byte {
	t.Helper()
	sig := ed25519.Sign(key, append([]byte("outpost-firmware-manifest-v1\n"), payload...))
	b, err := json.Marshal(map[string]any{"v": 1, "kid": kid, "payload": payload, "sig": sig})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// editEnvelope decodes a manifest file into a generic map, lets edit
// change it and writes it back.
func editEnvelope(t testing.TB, path string, edit func(env map[string]any)) {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal(readFile(t, path), &env); err != nil {
		t.Fatal(err)
	}
	edit(env)
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b)
}

// editPayload changes the signed payload, keeping the old signature.
func editPayload(t testing.TB, path string, edit func(m map[string]any)) {
	t.Helper()
	editEnvelope(t, path, func(env map[string]any) {
		raw, err := base64.StdEncoding.DecodeString(env["payload"].(string))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		edit(m)
		if raw, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
		env["payload"] = base64.StdEncoding.EncodeToString(raw)
	})
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSignVerify(t *testing.T) {
	release, other, attacker := testKey(1), testKey(2), testKey(3)
	for _, tc := range []struct {
		name   string
		keys   *Keyring
		tamper func(t *testing.T, artifact, manifest string)
		want   error  // nil = must verify
		detail string // substring of the error
	}{
		{name: "good", keys: ring(t, release)},
		{name: "good, several trusted keys", keys: ring(t, other, release)},
		{name: "envelope re-indented", keys: ring(t, release), tamper: func(t *testing.T, _, mf string) {
			var buf bytes.Buffer
			if err := json.Compact(&buf, readFile(t, mf)); err != nil {
				t.Fatal(err)
			}
			writeFile(t, mf, buf.Bytes())
		}},
		{name: "one bit flipped in the middle", keys: ring(t, release), want: ErrDigestMismatch, detail: "manifest says", tamper: func(t *testing.T, art, _ string) {
			b := readFile(t, art)
			b[len(b)/2] ^= 0x10
			writeFile(t, art, b)
		}},
		{name: "last bit flipped", keys: ring(t, release), want: ErrDigestMismatch, tamper: func(t *testing.T, art, _ string) {
			b := readFile(t, art)
			b[len(b)-1] ^= 0x01
			writeFile(t, art, b)
		}},
		{name: "truncated by one byte", keys: ring(t, release), want: ErrSizeMismatch, detail: "1048578 bytes, manifest says 1048579", tamper: func(t *testing.T, art, _ string) {
			if err := os.Truncate(art, 1<<20+2); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "truncated to nothing", keys: ring(t, release), want: ErrSizeMismatch, tamper: func(t *testing.T, art, _ string) {
			writeFile(t, art, nil)
		}},
		{name: "one byte appended", keys: ring(t, release), want: ErrSizeMismatch, tamper: func(t *testing.T, art, _ string) {
			writeFile(t, art, append(readFile(t, art), 0))
		}},
		{name: "artifact missing", keys: ring(t, release), want: fs.ErrNotExist, tamper: func(t *testing.T, art, _ string) {
			if err := os.Remove(art); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "manifest missing", keys: ring(t, release), want: fs.ErrNotExist, tamper: func(t *testing.T, _, mf string) {
			if err := os.Remove(mf); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "unknown kid", keys: ring(t, other), want: ErrUnknownKey, detail: KeyID(pub(other)), tamper: nil},
		{name: "no trusted keys", keys: nil, want: ErrUnknownKey, detail: "trusted: none"},
		{name: "wrong key under the trusted kid", keys: ring(t, release), want: ErrBadSignature, tamper: func(t *testing.T, _, mf string) {
			editEnvelope(t, mf, func(env map[string]any) {
				payload, _ := base64.StdEncoding.DecodeString(env["payload"].(string))
				env["sig"] = ed25519.Sign(attacker, append([]byte(SignContext), payload...))
			})
		}},
		{name: "kid switched to another trusted key", keys: ring(t, release, other), want: ErrBadSignature, tamper: func(t *testing.T, _, mf string) {
			editEnvelope(t, mf, func(env map[string]any) { env["kid"] = KeyID(pub(other)) })
		}},
		{name: "signature bit flipped", keys: ring(t, release), want: ErrBadSignature, tamper: func(t *testing.T, _, mf string) {
			editEnvelope(t, mf, func(env map[string]any) {
				sig, _ := base64.StdEncoding.DecodeString(env["sig"].(string))
				sig[10] ^= 0x80
				env["sig"] = sig
			})
		}},
		{name: "signed without the context prefix", keys: ring(t, release), want: ErrBadSignature, tamper: func(t *testing.T, _, mf string) {
			editEnvelope(t, mf, func(env map[string]any) {
				payload, _ := base64.StdEncoding.DecodeString(env["payload"].(string))
				env["sig"] = ed25519.Sign(release, payload)
			})
		}},
		{name: "version edited after signing", keys: ring(t, release), want: ErrBadSignature, tamper: func(t *testing.T, _, mf string) {
			editPayload(t, mf, func(m map[string]any) { m["version"] = "9.9.9" })
		}},
		{name: "size and digest edited to match a swapped artifact", keys: ring(t, release), want: ErrBadSignature, tamper: func(t *testing.T, art, mf string) {
			evil := []byte("#!/bin/sh\nrm -rf /\n")
			writeFile(t, art, evil)
			_, sum, _ := digest(bytes.NewReader(evil), -1)
			editPayload(t, mf, func(m map[string]any) {
				m["size"] = len(evil)
				m["sha256"] = hex.EncodeToString(sum)
			})
		}},
		{name: "target edited after signing", keys: ring(t, release), want: ErrBadSignature, tamper: func(t *testing.T, _, mf string) {
			editPayload(t, mf, func(m map[string]any) { m["target"].(map[string]any)["arch"] = "arm64" })
		}},
		{name: "malformed JSON", keys: ring(t, release), want: ErrMalformed, tamper: func(t *testing.T, _, mf string) {
			writeFile(t, mf, []byte(`{"v":1,"kid":`))
		}},
		{name: "manifest truncated", keys: ring(t, release), want: ErrMalformed, tamper: func(t *testing.T, _, mf string) {
			b := readFile(t, mf)
			writeFile(t, mf, b[:len(b)/2])
		}},
		{name: "empty manifest", keys: ring(t, release), want: ErrMalformed, tamper: func(t *testing.T, _, mf string) {
			writeFile(t, mf, nil)
		}},
		{name: "not an object", keys: ring(t, release), want: ErrMalformed, tamper: func(t *testing.T, _, mf string) {
			writeFile(t, mf, []byte(`["v",1]`))
		}},
		{name: "unknown envelope member", keys: ring(t, release), want: ErrMalformed, detail: `unknown member "alg"`, tamper: func(t *testing.T, _, mf string) {
			editEnvelope(t, mf, func(env map[string]any) { env["alg"] = "none" })
		}},
		{name: "differently-cased member", keys: ring(t, release), want: ErrMalformed, detail: `"Sig"`, tamper: func(t *testing.T, _, mf string) {
			editEnvelope(t, mf, func(env map[string]any) { env["Sig"] = env["sig"]; delete(env, "sig") })
		}},
		{name: "duplicate member", keys: ring(t, release), want: ErrMalformed, detail: `duplicate member "kid"`, tamper: func(t *testing.T, _, mf string) {
			b := readFile(t, mf)
			writeFile(t, mf, bytes.Replace(b, []byte(`{`), []byte(`{"kid":"0000000000000000",`), 1))
		}},
		{name: "trailing data", keys: ring(t, release), want: ErrMalformed, detail: "after the top-level", tamper: func(t *testing.T, _, mf string) {
			writeFile(t, mf, append(readFile(t, mf), []byte(`{}`)...))
		}},
		{name: "future format version", keys: ring(t, release), want: ErrMalformed, detail: "format version 2", tamper: func(t *testing.T, _, mf string) {
			editEnvelope(t, mf, func(env map[string]any) { env["v"] = 2 })
		}},
		{name: "payload not base64", keys: ring(t, release), want: ErrMalformed, tamper: func(t *testing.T, _, mf string) {
			editEnvelope(t, mf, func(env map[string]any) { env["payload"] = "!!!" })
		}},
		{name: "short signature", keys: ring(t, release), want: ErrMalformed, detail: "signature is 63 bytes", tamper: func(t *testing.T, _, mf string) {
			editEnvelope(t, mf, func(env map[string]any) {
				sig, _ := base64.StdEncoding.DecodeString(env["sig"].(string))
				env["sig"] = sig[:63]
			})
		}},
		{name: "manifest larger than 64 KiB", keys: ring(t, release), want: ErrMalformed, detail: "larger than 65536", tamper: func(t *testing.T, _, mf string) {
			writeFile(t, mf, append(readFile(t, mf), bytes.Repeat([]byte(" "), MaxManifestSize)...))
		}},
		{name: "signed payload with an unknown member", keys: ring(t, release), want: ErrMalformed, detail: `unknown member "install_script"`, tamper: func(t *testing.T, _, mf string) {
			payload := []byte(`{"version":"1.4.0","target":{"os":"linux","arch":"arm"},"size":1048579,"sha256":"` + strings.Repeat("0", 64) +
				`","created":"2026-03-01T12:00:00Z","kid":"` + KeyID(pub(release)) + `","install_script":"x"}`)
			writeFile(t, mf, envelopeJSON(t, release, KeyID(pub(release)), payload))
		}},
		{name: "signed payload with a kid that is not the signer's", keys: ring(t, release), want: ErrMalformed, detail: "differs from envelope kid", tamper: func(t *testing.T, _, mf string) {
			payload := []byte(`{"version":"1.4.0","target":{"os":"linux","arch":"arm"},"size":1048579,"sha256":"` + strings.Repeat("0", 64) +
				`","created":"2026-03-01T12:00:00Z","kid":"` + KeyID(pub(other)) + `"}`)
			writeFile(t, mf, envelopeJSON(t, release, KeyID(pub(release)), payload))
		}},
		{name: "signed payload that fails validation", keys: ring(t, release), want: ErrMalformed, detail: "size -1", tamper: func(t *testing.T, _, mf string) {
			payload := []byte(`{"version":"1.4.0","target":{"os":"linux","arch":"arm"},"size":-1,"sha256":"` + strings.Repeat("0", 64) +
				`","created":"2026-03-01T12:00:00Z","kid":"` + KeyID(pub(release)) + `"}`)
			writeFile(t, mf, envelopeJSON(t, release, KeyID(pub(release)), payload))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			art := signedArtifact(t, release)
			if tc.tamper != nil {
				tc.tamper(t, art, art+ManifestSuffix)
			}
			m, err := Verify(tc.keys, art)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				checkSigned(t, m, release)
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify error = %v, want %v", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "manifest: ") || !strings.Contains(err.Error(), tc.detail) {
				t.Errorf("Verify error %q: want prefix \"manifest: \" and detail %q", err, tc.detail)
			}
			if m.Size != 0 || m.KeyID != "" {
				t.Errorf("Verify returned a manifest with an error: %+v", m)
			}
		})
	}
}

func checkSigned(t *testing.T, m Manifest, key ed25519.PrivateKey) {
	t.Helper()
	_, sum, _ := digest(bytes.NewReader(artifactBytes()), -1)
	if m.Version.String() != "1.4.0-rc.1+g1a2b3c" || m.Target != testTarget || m.Size != 1<<20+3 ||
		m.SHA256 != hex.EncodeToString(sum) || m.KeyID != KeyID(pub(key)) || m.Notes != "Fixes pH drift.\nNew <alert> rules & more." {
		t.Errorf("verified manifest = %+v", m)
	}
	if m.Created.IsZero() || time.Since(m.Created) > time.Hour || m.Created.Location() != time.UTC || m.Created.Nanosecond() != 0 {
		t.Errorf("Created = %v, want now in UTC, whole seconds", m.Created)
	}
}

// The signature covers exactly SignContext || payload, and a verifier
// written from the package documentation alone accepts Sign's output.
func TestSignedBytesAsDocumented(t *testing.T) {
	key := testKey(1)
	art := signedArtifact(t, key)
	var env struct {
		V       int    `json:"v"`
		KID     string `json:"kid"`
		Payload string `json:"payload"`
		Sig     string `json:"sig"`
	}
	if err := json.Unmarshal(readFile(t, art+ManifestSuffix), &env); err != nil {
		t.Fatal(err)
	}
	payload, err1 := base64.StdEncoding.DecodeString(env.Payload)
	sig, err2 := base64.StdEncoding.DecodeString(env.Sig)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	if env.V != 1 || env.KID != KeyID(pub(key)) {
		t.Errorf("envelope v=%d kid=%s", env.V, env.KID)
	}
	if !ed25519.Verify(pub(key), append([]byte("outpost-firmware-manifest-v1\n"), payload...), sig) {
		t.Error("signature does not cover \"outpost-firmware-manifest-v1\\n\" || payload")
	}
	if ed25519.Verify(pub(key), payload, sig) {
		t.Error("signature verifies over the bare payload")
	}
	if !bytes.HasPrefix(payload, []byte(`{"version":"1.4.0-rc.1+g1a2b3c","target":{"os":"linux","arch":"arm","variant":"armv7","board":"Raspberry Pi 4"},"size":1048579,"sha256":"`)) {
		t.Errorf("payload = %s", payload)
	}
}

func TestGolden(t *testing.T) {
	key := testKey(1)
	m := Manifest{
		Version: Version{Major: 1, Minor: 4, Patch: 0, Pre: []string{"rc", "1"}},
		Target:  Target{OS: "linux", Arch: "arm", Variant: "armv6", Board: "Raspberry Pi Zero W"},
		Size:    12345678,
		SHA256:  "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Created: time.Date(2026, 3, 1, 12, 0, 0, 999, time.FixedZone("CET", 3600)),
		Notes:   "First signed release.",
	}
	got, err := SignManifest(key, m)
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "signed.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := readFile(t, golden)
	if !bytes.Equal(got, want) {
		t.Errorf("SignManifest output changed; the signed file format is a wire format (run with -update only on purpose)\ngot:\n%s\nwant:\n%s", got, want)
	}
	v, err := VerifyManifest(ring(t, key), want)
	if err != nil {
		t.Fatal(err)
	}
	if !v.Created.Equal(time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)) || v.Version.String() != "1.4.0-rc.1" || v.Size != m.Size {
		t.Errorf("golden manifest decoded as %+v", v)
	}
}

func TestCheckArtifactStopsReading(t *testing.T) {
	key := testKey(1)
	art := signedArtifact(t, key)
	m, err := Verify(ring(t, key), art)
	if err != nil {
		t.Fatal(err)
	}
	// An endless stream must be rejected after m.Size+1 bytes, not read forever.
	endless := io.MultiReader(bytes.NewReader(artifactBytes()), zeros{})
	if err := CheckArtifact(m, endless); !errors.Is(err, ErrSizeMismatch) || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("endless stream: %v", err)
	}
	if err := CheckArtifact(m, bytes.NewReader(artifactBytes())); err != nil {
		t.Errorf("good stream: %v", err)
	}
	if err := CheckArtifact(Manifest{}, bytes.NewReader(nil)); !errors.Is(err, ErrMalformed) {
		t.Errorf("zero manifest: %v", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestSignErrors(t *testing.T) {
	key := testKey(1)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, nil)
	art := filepath.Join(dir, "fw")
	writeFile(t, art, []byte("firmware"))
	for _, tc := range []struct {
		name    string
		key     ed25519.PrivateKey
		path    string
		version string
		target  Target
		notes   string
		want    string
	}{
		{"bad version", key, art, "v1.0.0", testTarget, "", `leading "v"`},
		{"missing artifact", key, filepath.Join(dir, "nope"), "1.0.0", testTarget, "", "no such file"},
		{"directory", key, dir, "1.0.0", testTarget, "", "not a regular file"},
		{"empty artifact", key, empty, "1.0.0", testTarget, "", "is empty"},
		{"bad target", key, art, "1.0.0", Target{OS: "linux"}, "", "target.arch"},
		{"notes too long", key, art, "1.0.0", testTarget, strings.Repeat("x", MaxNotesLen+1), "notes are"},
		{"control character in notes", key, art, "1.0.0", testTarget, "a\x1b[31m", "control character"},
		{"short key", key[:10], art, "1.0.0", testTarget, "", "private key is 10 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Sign(tc.key, tc.path, tc.version, tc.target, tc.notes)
			if err == nil || !strings.HasPrefix(err.Error(), "manifest: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Sign error = %v, want manifest: ... %q", err, tc.want)
			}
			if _, err := os.Stat(tc.path + ManifestSuffix); err == nil && tc.path != art {
				t.Errorf("a manifest was written despite the error")
			}
		})
	}
	if _, err := os.Stat(art + ManifestSuffix); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("failed Sign calls left %s behind", art+ManifestSuffix)
	}
}

func TestKeygen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	kid, err := Keygen(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]fs.FileMode{PrivateKeyFile: 0o600, PublicKeyFile: 0o644, ".": 0o700} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v", name, got, want)
		}
	}
	priv, err := LoadPrivateKey(filepath.Join(dir, PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := LoadKeyring(filepath.Join(dir, PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if ids := keys.KeyIDs(); len(ids) != 1 || ids[0] != kid || kid != KeyID(pub(priv)) || len(kid) != 16 {
		t.Errorf("kid %s, keyring %v, private key's kid %s", kid, ids, KeyID(pub(priv)))
	}

	// The files work end to end.
	art := filepath.Join(t.TempDir(), "fw")
	writeFile(t, art, []byte("firmware image"))
	if _, err := Sign(priv, art, "2.0.0", testTarget, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(keys, art); err != nil {
		t.Fatal(err)
	}

	before := readFile(t, filepath.Join(dir, PrivateKeyFile))
	if _, err := Keygen(dir, false); !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), PrivateKeyFile) {
		t.Errorf("second Keygen: err = %v, want fs.ErrExist naming %s", err, PrivateKeyFile)
	}
	if !bytes.Equal(readFile(t, filepath.Join(dir, PrivateKeyFile)), before) {
		t.Error("release.key changed although overwriting was refused")
	}
	kid2, err := Keygen(dir, true)
	if err != nil || kid2 == kid {
		t.Fatalf("forced Keygen: kid %s (old %s), err %v", kid2, kid, err)
	}
	rotated, err := LoadKeyring(filepath.Join(dir, PublicKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(rotated, art); !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), kid2) {
		t.Errorf("artifact signed by the replaced key, verified with the new release.pub: %v", err)
	}

	// Only release.pub present: nothing is written, release.key is named.
	dir2 := t.TempDir()
	writeFile(t, filepath.Join(dir2, PublicKeyFile), []byte("old"))
	if _, err := Keygen(dir2, false); !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), PublicKeyFile) {
		t.Errorf("Keygen over a stray release.pub: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir2, PrivateKeyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Error("release.key written although Keygen failed")
	}
}

func TestKeyring(t *testing.T) {
	dir := t.TempDir()
	if _, err := Keygen(filepath.Join(dir, "a"), false); err != nil {
		t.Fatal(err)
	}
	if _, err := Keygen(filepath.Join(dir, "b"), false); err != nil {
		t.Fatal(err)
	}
	both := filepath.Join(dir, "trusted.pub")
	writeFile(t, both, append(append([]byte("# current\n"), readFile(t, filepath.Join(dir, "a", PublicKeyFile))...),
		readFile(t, filepath.Join(dir, "b", PublicKeyFile))...))
	k, err := LoadKeyring(both)
	if err != nil || len(k.KeyIDs()) != 2 {
		t.Fatalf("LoadKeyring of two concatenated keys: %v, %v", k.KeyIDs(), err)
	}
	for _, tc := range []struct {
		name, file, want string
	}{
		{"private key as public", filepath.Join(dir, "a", PrivateKeyFile), `"PRIVATE KEY", want PUBLIC KEY`},
		{"no PEM", both + ".empty", "no PEM PUBLIC KEY"},
		{"missing", filepath.Join(dir, "nope.pub"), "no such file"},
	} {
		if tc.name == "no PEM" {
			writeFile(t, tc.file, []byte("not a key"))
		}
		if _, err := LoadKeyring(tc.file); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "manifest: ") {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	if _, err := LoadPrivateKey(filepath.Join(dir, "a", PublicKeyFile)); err == nil {
		t.Error("LoadPrivateKey accepted a public key")
	}
	if _, err := NewKeyring(ed25519.PublicKey{1, 2, 3}); err == nil {
		t.Error("NewKeyring accepted a 3-byte key")
	}
}

// The payload decoder rejects every way two JSON parsers could disagree
// about a signed manifest, and input that only costs time.
func TestStrictPayload(t *testing.T) {
	const sha = `"sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"`
	good := `{"version":"1.0.0","target":{"os":"linux","arch":"arm64"},"size":1,` + sha + `,"created":"2026-03-01T12:00:00Z","kid":"0011223344556677"}`
	if _, err := decodePayload([]byte(good)); err != nil {
		t.Fatalf("good payload: %v", err)
	}
	for _, tc := range []struct{ name, in, want string }{
		{"duplicate member", strings.Replace(good, `"size":1`, `"size":1,"size":2`, 1), `duplicate member "size"`},
		{"duplicate nested member", strings.Replace(good, `"os":"linux"`, `"os":"linux","os":"windows"`, 1), `duplicate member "os"`},
		{"case variant", strings.Replace(good, `"size":1`, `"Size":1`, 1), `unknown member "Size"`},
		{"case variant beside the original", strings.Replace(good, `"size":1`, `"size":1,"SIZE":2`, 1), `unknown member "SIZE"`},
		{"unicode fold variant", strings.Replace(good, `"size":1`, `"ſize":1`, 1), `unknown member "ſize"`},
		{"member at the wrong level", strings.Replace(good, `"size":1`, `"size":1,"os":"linux"`, 1), `unknown field "os"`},
		{"too deep", strings.Replace(good, `"os":"linux"`, `"os":[[[[[[[[["linux"]]]]]]]]]`, 1), "nested deeper than 8"},
		{"trailing value", good + ` {}`, "after the top-level"},
		{"trailing garbage", good + `x`, "invalid character"},
		{"invalid UTF-8", strings.Replace(good, `"size":1`, "\"size\":1,\"notes\":\"\xff\"", 1), "not valid UTF-8"},
		{"too large", good + strings.Repeat(" ", MaxManifestSize), "at most 65536"},
		{"missing target", strings.Replace(good, `"target":{"os":"linux","arch":"arm64"},`, ``, 1), "target.os"},
		{"uppercase digest", strings.Replace(good, "9f86", "9F86", 1), "sha256"},
		{"missing created", strings.Replace(good, `"created":"2026-03-01T12:00:00Z",`, ``, 1), "created is missing"},
		{"size as string", strings.Replace(good, `"size":1`, `"size":"1"`, 1), "cannot unmarshal"},
		{"size as float", strings.Replace(good, `"size":1`, `"size":1.5`, 1), "cannot unmarshal"},
		{"version with v", strings.Replace(good, `"1.0.0"`, `"v1.0.0"`, 1), `leading "v"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodePayload([]byte(tc.in))
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrMalformed containing %q", err, tc.want)
			}
		})
	}
}
