package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// File names inside a PKI directory.
const (
	CACertFile     = "ca.crt"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.crt"
	ServerKeyFile  = "server.key"
	DevicesDir     = "devices"
)

// Validity periods and the NotBefore backdating of issued certificates.
const (
	CAValidity     = 3650 * 24 * time.Hour // 10 years
	ServerValidity = 825 * 24 * time.Hour
	DeviceValidity = 825 * 24 * time.Hour
	Backdate       = time.Hour
)

// DeviceURIPrefix prefixes the device id in a device certificate's URI SAN.
const DeviceURIPrefix = "urn:outpost:device:"

// Sentinel errors; every error of this package that is about bad input wraps
// one of them (refusing to overwrite wraps fs.ErrExist).
var (
	ErrInvalidID   = errors.New("invalid device id")
	ErrInvalidHost = errors.New("invalid host")
	ErrBadPKI      = errors.New("unusable PKI")
)

// Paths names the files of a PKI directory.
type Paths struct {
	Dir        string
	CACert     string
	CAKey      string
	ServerCert string
	ServerKey  string
}

// PathsIn returns the file names of the PKI directory dir.
func PathsIn(dir string) Paths {
	return Paths{
		Dir:        dir,
		CACert:     filepath.Join(dir, CACertFile),
		CAKey:      filepath.Join(dir, CAKeyFile),
		ServerCert: filepath.Join(dir, ServerCertFile),
		ServerKey:  filepath.Join(dir, ServerKeyFile),
	}
}

// Device returns the certificate and key file names of device id. It does
// not validate id.
func (p Paths) Device(id string) (certFile, keyFile string) {
	d := filepath.Join(p.Dir, DevicesDir)
	return filepath.Join(d, id+".crt"), filepath.Join(d, id+".key")
}

// InitCA creates a new CA and a hub server certificate signed by it in dir
// (created 0700 if missing). The server certificate covers localhost,
// 127.0.0.1, ::1 and every entry of hosts (DNS names or IP literals). Unless
// force is true, InitCA refuses to overwrite any of the four files and
// writes none of them.
func InitCA(dir string, hosts []string, force bool) (Paths, error) {
	return initCA(dir, hosts, force, time.Now())
}

func initCA(dir string, hosts []string, force bool, now time.Time) (Paths, error) {
	p := PathsIn(dir)
	dns, ips, err := serverNames(hosts)
	if err != nil {
		return p, err
	}
	ca, caKeyPEM, err := newCA(now)
	if err != nil {
		return p, err
	}
	srvPEM, srvKeyPEM, err := ca.issueServer(dns, ips, now)
	if err != nil {
		return p, err
	}
	if err := mkdir(dir); err != nil {
		return p, err
	}
	err = writeFiles([]file{
		{Path: p.CAKey, Data: caKeyPEM, Mode: 0o600},
		{Path: p.CACert, Data: certPEM(ca.cert), Mode: 0o644},
		{Path: p.ServerKey, Data: srvKeyPEM, Mode: 0o600},
		{Path: p.ServerCert, Data: srvPEM, Mode: 0o644},
	}, force)
	return p, err
}

// IssueServer issues a new hub server certificate and key with the CA in
// dir, covering localhost, 127.0.0.1, ::1 and hosts. Use it to renew the
// server certificate or to add a host without replacing the CA. Unless force
// is true it refuses to overwrite server.crt or server.key.
func IssueServer(dir string, hosts []string, force bool) (Paths, error) {
	return issueServer(dir, hosts, force, time.Now())
}

func issueServer(dir string, hosts []string, force bool, now time.Time) (Paths, error) {
	p := PathsIn(dir)
	dns, ips, err := serverNames(hosts)
	if err != nil {
		return p, err
	}
	ca, err := loadIssuer(p, now)
	if err != nil {
		return p, err
	}
	crt, key, err := ca.issueServer(dns, ips, now)
	if err != nil {
		return p, err
	}
	return p, writeFiles([]file{{Path: p.ServerKey, Data: key, Mode: 0o600}, {Path: p.ServerCert, Data: crt, Mode: 0o644}}, force)
}

// IssueDevice issues a client certificate for device id with the CA in dir
// and writes it as dir/devices/ID.crt and dir/devices/ID.key. The id must
// pass ValidDeviceID. Unless force is true it refuses to overwrite either
// file.
func IssueDevice(dir, id string, force bool) (certFile, keyFile string, err error) {
	return issueDevice(dir, id, force, time.Now())
}

func issueDevice(dir, id string, force bool, now time.Time) (certFile, keyFile string, err error) {
	if err := ValidDeviceID(id); err != nil {
		return "", "", err
	}
	p := PathsIn(dir)
	certFile, keyFile = p.Device(id)
	ca, err := loadIssuer(p, now)
	if err != nil {
		return certFile, keyFile, err
	}
	crt, key, err := ca.issueDevice(id, now)
	if err != nil {
		return certFile, keyFile, err
	}
	if err := mkdir(filepath.Dir(certFile)); err != nil {
		return certFile, keyFile, err
	}
	return certFile, keyFile, writeFiles([]file{{Path: keyFile, Data: key, Mode: 0o600}, {Path: certFile, Data: crt, Mode: 0o644}}, force)
}

// EnsureHubPKI is the hub's first-start step. If dir holds none of the PKI
// files it creates the CA and the server certificate (InitCA); if it holds
// the CA but neither server file, it issues the server certificate. If
// ca.crt, server.crt and server.key exist (ca.key may have been moved
// offline) it checks that the server certificate matches its key, chains to
// ca.crt, is currently valid and covers every requested host, and changes
// nothing. Any other combination is an error naming the missing files.
// created reports whether files were written.
func EnsureHubPKI(dir string, hosts []string) (p Paths, created bool, err error) {
	return ensureHubPKI(dir, hosts, time.Now())
}

func ensureHubPKI(dir string, hosts []string, now time.Time) (Paths, bool, error) {
	p := PathsIn(dir)
	have := map[string]bool{}
	var present, missing []string
	for _, f := range []string{p.CACert, p.CAKey, p.ServerCert, p.ServerKey} {
		_, err := os.Lstat(f)
		switch {
		case err == nil:
			have[f] = true
			present = append(present, filepath.Base(f))
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, filepath.Base(f))
		default:
			return p, false, fmt.Errorf("certs: %w", err)
		}
	}
	switch {
	case len(present) == 0:
		p, err := initCA(dir, hosts, false, now)
		return p, err == nil, err
	case have[p.CACert] && have[p.CAKey] && !have[p.ServerCert] && !have[p.ServerKey]:
		p, err := issueServer(dir, hosts, false, now)
		return p, err == nil, err
	case have[p.CACert] && have[p.ServerCert] && have[p.ServerKey]:
		return p, false, checkServer(p, hosts, now)
	}
	return p, false, fmt.Errorf("certs: %w: %s is incomplete: missing %s (present: %s); restore the missing files or re-create the PKI",
		ErrBadPKI, dir, strings.Join(missing, ", "), strings.Join(present, ", "))
}

// checkServer verifies that the server certificate in p is usable for hosts.
func checkServer(p Paths, hosts []string, now time.Time) error {
	if _, err := loadServerPair(p.ServerCert, p.ServerKey, now); err != nil {
		return err
	}
	leaf, err := readLeaf(p.ServerCert)
	if err != nil {
		return err
	}
	roots, err := caPool(p.CACert)
	if err != nil {
		return err
	}
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("certs: %w: %s does not verify against %s: %w", ErrBadPKI, p.ServerCert, p.CACert, err)
	}
	dns, ips, err := serverNames(hosts)
	if err != nil {
		return err
	}
	for _, h := range dns {
		if !slices.Contains(leaf.DNSNames, h) && leaf.VerifyHostname(h) != nil {
			return fmt.Errorf("certs: %w: %s does not cover host %q; reissue the server certificate", ErrBadPKI, p.ServerCert, h)
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(leaf.IPAddresses, ip.Equal) {
			return fmt.Errorf("certs: %w: %s does not cover IP %s; reissue the server certificate", ErrBadPKI, p.ServerCert, ip)
		}
	}
	return nil
}

// issuer is a CA certificate with its signing key.
type issuer struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newCA(now time.Time) (*issuer, []byte, error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	skid, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	sn, err := serialNumber()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: sn,
		Subject: pkix.Name{
			Organization: []string{"Outpost"},
			CommonName:   "Outpost CA " + hex.EncodeToString(skid[:4]),
		},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		SubjectKeyId:          skid,
	}
	cert, err := create(tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	return &issuer{cert: cert, key: key}, keyPEM, nil
}

func (ca *issuer) issueServer(dns []string, ips []net.IP, now time.Time) (crtPEM, keyPEM []byte, err error) {
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			Organization: []string{"Outpost"},
			CommonName:   "outpost-hub",
		},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    dns,
		IPAddresses: ips,
	}
	return ca.issueLeaf(tmpl, ServerValidity, now)
}

func (ca *issuer) issueDevice(id string, now time.Time) (crtPEM, keyPEM []byte, err error) {
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			Organization:       []string{"Outpost"},
			OrganizationalUnit: []string{"device"},
			CommonName:         id,
		},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{deviceURI(id)},
	}
	return ca.issueLeaf(tmpl, DeviceValidity, now)
}

// issueLeaf fills in the fields common to all leaf certificates, generates
// the key and signs tmpl. NotAfter never exceeds the CA's.
func (ca *issuer) issueLeaf(tmpl *x509.Certificate, validity time.Duration, now time.Time) (crtPEM, keyPEM []byte, err error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	if tmpl.SubjectKeyId, err = subjectKeyID(&key.PublicKey); err != nil {
		return nil, nil, err
	}
	if tmpl.SerialNumber, err = serialNumber(); err != nil {
		return nil, nil, err
	}
	tmpl.NotBefore = now.Add(-Backdate)
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	cert, err := create(tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, nil, err
	}
	return certPEM(cert), keyPEM, nil
}

func create(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("certs: create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: parse new certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return cert, nil
}

// loadIssuer loads the CA certificate and key of p and checks that they
// belong together and can sign at time now.
func loadIssuer(p Paths, now time.Time) (*issuer, error) {
	cert, err := readLeaf(p.CACert)
	if err != nil {
		return nil, err
	}
	if !cert.BasicConstraintsValid || !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("certs: %w: %s is not a CA certificate allowed to sign certificates", ErrBadPKI, p.CACert)
	}
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, fmt.Errorf("certs: %w: CA certificate %s is valid only from %s to %s",
			ErrBadPKI, p.CACert, cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	}
	key, err := readKey(p.CAKey)
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("certs: %w: %s is not the key of %s", ErrBadPKI, p.CAKey, p.CACert)
	}
	return &issuer{cert: cert, key: key}, nil
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: generate P-256 key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: marshal private key: %w", err)
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// subjectKeyID is RFC 7093 section 2 method 1: the leftmost 160 bits of the
// SHA-256 hash of the subjectPublicKey bit string (the uncompressed point).
func subjectKeyID(pub *ecdsa.PublicKey) ([]byte, error) {
	b, err := pub.Bytes()
	if err != nil {
		return nil, fmt.Errorf("certs: encode public key: %w", err)
	}
	sum := sha256.Sum256(b)
	return sum[:20], nil
}

// serialNumber returns a positive random integer below 2^128.
func serialNumber() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("certs: serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func deviceURI(id string) *url.URL {
	return &url.URL{Scheme: "urn", Opaque: strings.TrimPrefix(DeviceURIPrefix, "urn:") + id}
}
