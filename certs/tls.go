package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"slices"
	"time"
)

// LoadServerTLS returns a TLS server configuration (TLS 1.2 or later) that
// presents the certificate in certFile with the key in keyFile. If
// clientCAFile is not empty, client certificates are verified against the CA
// certificates in it with tls.VerifyClientCertIfGiven: a client may connect
// without a certificate (it then authenticates with its token), but one
// presenting a certificate that does not chain to that CA, or lacks the
// ClientAuth usage, is refused. Set ClientAuth to
// tls.RequireAndVerifyClientCert on the result to make client certificates
// mandatory.
//
// The certificate is checked at load time: it must match the key, be
// currently valid and allow ServerAuth.
func LoadServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	return loadServerTLS(certFile, keyFile, clientCAFile, time.Now())
}

func loadServerTLS(certFile, keyFile, clientCAFile string, now time.Time) (*tls.Config, error) {
	pair, err := loadServerPair(certFile, keyFile, now)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
	}
	if clientCAFile != "" {
		pool, err := caPool(clientCAFile)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}

// ClientTLS returns a TLS client configuration (TLS 1.2 or later) that
// trusts only the CA certificates in caFile, not the system roots: gateways
// and outpostctl use it to pin the hub's CA. caFile must hold CA
// certificates only, so that passing a leaf certificate by mistake is
// reported instead of silently pinning that leaf.
//
// ServerName is left empty: tls.Dial and most MQTT clients fill it in from
// the address dialled; set it when using tls.Client directly.
func ClientTLS(caFile string) (*tls.Config, error) {
	pool, err := caPool(caFile)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
}

// DeviceTLS is ClientTLS that also presents the device certificate in
// certFile (key in keyFile) for mutual TLS. The certificate must be
// currently valid and allow ClientAuth.
func DeviceTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	return deviceTLS(caFile, certFile, keyFile, time.Now())
}

func deviceTLS(caFile, certFile, keyFile string, now time.Time) (*tls.Config, error) {
	cfg, err := ClientTLS(caFile)
	if err != nil {
		return nil, err
	}
	pair, err := loadPair(certFile, keyFile, x509.ExtKeyUsageClientAuth, now)
	if err != nil {
		return nil, err
	}
	cfg.Certificates = []tls.Certificate{pair}
	return cfg, nil
}

// PeerDeviceID returns the device id of the verified client certificate of
// a server-side connection: the CN of the leaf of the first verified chain,
// which must be a valid device id, allow ClientAuth and, if it carries URI
// SANs, carry the matching "urn:outpost:device:ID". It fails if the client
// presented no certificate or it was not verified.
func PeerDeviceID(cs tls.ConnectionState) (string, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", fmt.Errorf("certs: peer presented no verified client certificate")
	}
	leaf := cs.VerifiedChains[0][0]
	if !allows(leaf, x509.ExtKeyUsageClientAuth) {
		return "", fmt.Errorf("certs: %w: peer certificate %q does not allow client authentication", ErrBadPKI, leaf.Subject.CommonName)
	}
	id := leaf.Subject.CommonName
	if err := ValidDeviceID(id); err != nil {
		return "", err
	}
	if len(leaf.URIs) > 0 && !slices.ContainsFunc(leaf.URIs, func(u *url.URL) bool { return u.String() == DeviceURIPrefix+id }) {
		return "", fmt.Errorf("certs: %w: peer certificate CN %q has no matching URI SAN %s%s", ErrBadPKI, id, DeviceURIPrefix, id)
	}
	return id, nil
}

func loadServerPair(certFile, keyFile string, now time.Time) (tls.Certificate, error) {
	return loadPair(certFile, keyFile, x509.ExtKeyUsageServerAuth, now)
}

// loadPair loads a certificate and its key and checks that the leaf is valid
// at now and allows usage.
func loadPair(certFile, keyFile string, usage x509.ExtKeyUsage, now time.Time) (tls.Certificate, error) {
	certPEM, err := readPEMFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readPEMFile(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: %w: key pair %s, %s: %w", ErrBadPKI, certFile, keyFile, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return tls.Certificate{}, fmt.Errorf("certs: %w: %s: %w", ErrBadPKI, certFile, err)
		}
		pair.Leaf = leaf
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return tls.Certificate{}, fmt.Errorf("certs: %w: %s is valid only from %s to %s (now %s)", ErrBadPKI, certFile,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if !allows(leaf, usage) {
		return tls.Certificate{}, fmt.Errorf("certs: %w: %s does not allow %s", ErrBadPKI, certFile, usageName(usage))
	}
	return pair, nil
}

// allows reports whether c may be used for usage (no ExtKeyUsage means any).
func allows(c *x509.Certificate, usage x509.ExtKeyUsage) bool {
	if len(c.ExtKeyUsage) == 0 && len(c.UnknownExtKeyUsage) == 0 {
		return true
	}
	return slices.Contains(c.ExtKeyUsage, usage) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}

func usageName(u x509.ExtKeyUsage) string {
	switch u {
	case x509.ExtKeyUsageServerAuth:
		return "server authentication (ExtKeyUsage ServerAuth)"
	case x509.ExtKeyUsageClientAuth:
		return "client authentication (ExtKeyUsage ClientAuth)"
	}
	return fmt.Sprintf("ExtKeyUsage %d", u)
}

// caPool returns a pool of the certificates in path, each of which must be
// a CA certificate.
func caPool(path string) (*x509.CertPool, error) {
	certs, err := readCerts(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for i, c := range certs {
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, fmt.Errorf("certs: %w: %s: certificate %d (%q) is not a CA certificate; pass ca.crt, not a server or device certificate",
				ErrBadPKI, path, i+1, c.Subject.CommonName)
		}
		pool.AddCert(c)
	}
	return pool, nil
}
