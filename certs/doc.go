// Package certs is Outpost's small private PKI: it creates the fleet CA and
// the hub's server certificate, issues device client certificates, and builds
// the *tls.Config values the hub, the gateways and outpostctl use. It is the
// logic behind `outpostctl certs init`, `outpostctl certs device ID` and the
// hub's first start (EnsureHubPKI). It uses the standard library only.
//
// # Directory layout
//
// A PKI directory (created 0700) holds PEM files:
//
//	ca.crt               CA certificate ("CERTIFICATE"); copy it to every gateway
//	ca.key               CA private key ("PRIVATE KEY", PKCS #8, ECDSA P-256), 0600
//	server.crt           hub server certificate, signed by the CA
//	server.key           its private key (PKCS #8, ECDSA P-256), 0600
//	devices/ID.crt       device client certificate, CN = ID
//	devices/ID.key       its private key (PKCS #8, ECDSA P-256), 0600
//
// # Certificates
//
// All keys are ECDSA P-256 and every certificate gets a random 128-bit serial
// number and a SubjectKeyId (the leftmost 160 bits of the SHA-256 of the
// public key, RFC 7093 method 1). NotBefore is backdated by one hour so that
// a peer whose clock lags a little (a Raspberry Pi without an RTC restoring
// fake-hwclock) still accepts a freshly issued certificate.
//
//   - CA: 10 years, BasicConstraints CA:TRUE with MaxPathLen 0 (it signs
//     leaves only), KeyUsage CertSign|CRLSign.
//   - Server: 825 days, ExtKeyUsage ServerAuth, KeyUsage DigitalSignature,
//     SANs localhost, 127.0.0.1, ::1 and every extra host given (IP literals go
//     into the IP SANs, names into the DNS SANs).
//   - Device: 825 days, ExtKeyUsage ClientAuth, KeyUsage DigitalSignature,
//     CN = the device id and a URI SAN "urn:outpost:device:ID".
//
// # Overwriting
//
// Nothing is ever overwritten unless force is true: every target file is
// checked first and then created with O_EXCL, so a concurrent writer cannot
// be clobbered either; the error names the file and wraps fs.ErrExist. With
// force, each file is replaced atomically (temporary file + rename).
// Re-creating the CA invalidates every device certificate and every
// gateway's pinned ca.crt; renew only the server certificate with
// IssueServer instead.
package certs
