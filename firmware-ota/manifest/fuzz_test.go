package manifest

import (
	"encoding/json"
	"errors"
	"io/fs"
	"testing"
	"time"
)

// FuzzDecode feeds arbitrary bytes to the strict decoders and to
// VerifyManifest. Properties: nothing panics; every VerifyManifest error
// wraps a sentinel; anything that verifies is exactly the seed manifest
// (the signature pins the payload); a payload that decodes re-encodes to
// an equal manifest.
func FuzzDecode(f *testing.F) {
	key := testKey(1)
	keys := ring(f, key)
	want := Manifest{
		Version: Version{Major: 1, Minor: 2, Patch: 3, Pre: []string{"beta", "2"}},
		Target:  Target{OS: "linux", Arch: "arm64", Board: "Raspberry Pi 5"},
		Size:    42,
		SHA256:  "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
		Created: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC),
		Notes:   "seed",
	}
	want, signed, err := signManifest(key, want)
	if err != nil {
		f.Fatal(err)
	}
	payload, err := json.Marshal(&want)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(signed)
	f.Add(payload)
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"v":1}`, `{"v":1,"kid":"0011223344556677","payload":"e30=","sig":""}`,
		`{"version":"1.0.0","version":"2.0.0"}`, `{"VERSION":"1.0.0"}`, `{"target":{"os":"linux","os":"x"}}`,
		`{"a":[{"b":1}],"c":{}}`, `{} {}`, `"\ud800"`, `{"created":"2026-13-01T00:00:00Z"}`,
	} {
		f.Add([]byte(s))
	}
	sentinels := []error{ErrMalformed, ErrUnknownKey, ErrBadSignature}

	f.Fuzz(func(t *testing.T, data []byte) {
		if env, err := decodeEnvelope(data); err == nil {
			if len(env.Sig) != 64 || len(env.Payload) == 0 || env.V != FormatVersion {
				t.Fatalf("decodeEnvelope accepted %+v", env)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("decodeEnvelope error %v does not wrap ErrMalformed", err)
		}

		if m, err := decodePayload(data); err == nil {
			b, err := json.Marshal(&m)
			if err != nil {
				t.Fatalf("re-encode %+v: %v", m, err)
			}
			m2, err := decodePayload(b)
			if err != nil {
				t.Fatalf("re-encoded payload %s rejected: %v", b, err)
			}
			if !sameManifest(m, m2) {
				t.Fatalf("round trip changed %+v into %+v", m, m2)
			}
		} else if !errors.Is(err, ErrMalformed) {
			t.Fatalf("decodePayload error %v does not wrap ErrMalformed", err)
		}

		m, err := VerifyManifest(keys, data)
		if err == nil {
			if !sameManifest(m, want) {
				t.Fatalf("VerifyManifest accepted a different manifest: %+v", m)
			}
			return
		}
		for _, s := range sentinels {
			if errors.Is(err, s) {
				return
			}
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("VerifyManifest error %v wraps no sentinel", err)
		}
	})
}

func sameManifest(a, b Manifest) bool {
	return a.Version.String() == b.Version.String() && a.Target == b.Target && a.Size == b.Size &&
		a.SHA256 == b.SHA256 && a.Created.Equal(b.Created) && a.Notes == b.Notes && a.KeyID == b.KeyID
}
