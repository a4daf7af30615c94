// Package manifest signs and verifies Outpost firmware manifests: the
// statement, made with the offline release key (never the hub's key), that
// an artifact of a given size and SHA-256 digest is firmware version V for a
// given target. The gateway installs an artifact only if Verify accepts it.
// It uses the standard library only (crypto/ed25519).
//
// # Files
//
// Keygen writes a release key pair:
//
//	release.key   "PRIVATE KEY" PEM, PKCS #8 Ed25519, mode 0600
//	release.pub   "PUBLIC KEY" PEM, PKIX Ed25519, mode 0644
//
// A key id (kid) is the first 8 bytes of the SHA-256 of the raw 32-byte
// Ed25519 public key, as 16 lower-case hex digits.
//
// Sign writes ARTIFACT.manifest.json next to the artifact. It is a JSON
// object with exactly these members:
//
//	{
//	  "v": 1,                      // envelope format version
//	  "kid": "3f2a9c0b1d4e5f60",   // key id of the signing key
//	  "payload": "eyJ2ZXJzaW9u...", // standard base64 of the manifest JSON bytes
//	  "sig": "q83v..."             // standard base64 of the 64-byte Ed25519 signature
//	}
//
// The payload is the manifest as compact JSON, kept as the exact bytes that
// were signed, so re-encoding or re-indenting the envelope cannot change
// what was signed:
//
//	{"version":"1.4.0-rc.1","target":{"os":"linux","arch":"arm","variant":"armv7","board":"Raspberry Pi 4"},
//	 "size":12345678,"sha256":"<64 hex digits>","created":"2026-03-01T12:00:00Z","notes":"...","kid":"3f2a9c0b1d4e5f60"}
//
// # What is signed
//
// The signature is plain Ed25519 (RFC 8032, not Ed25519ctx/ph) over the
// bytes of SignContext ("outpost-firmware-manifest-v1" and a newline)
// followed by the decoded payload bytes. The prefix separates manifest
// signatures from anything else the release key might ever sign. A
// third-party verifier needs only: base64-decode payload and sig, verify
// sig over SignContext||payload with the key named by kid, then parse
// payload.
//
// # Verification
//
// VerifyManifest checks, in this order: size (at most MaxManifestSize
// bytes), strict JSON (no unknown, duplicate or differently-cased member
// names, nothing after the object), the envelope version, that kid names a
// trusted key (ErrUnknownKey), the signature (ErrBadSignature), and only
// then parses and validates the signed payload and checks that its kid
// matches. Verify additionally streams the artifact and compares its size
// (ErrSizeMismatch) and SHA-256 (ErrDigestMismatch). Every error is
// prefixed "manifest:" and wraps one of the sentinel errors, or an fs error
// for a missing file.
package manifest
