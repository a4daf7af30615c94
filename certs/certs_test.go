package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// mustInit creates a PKI in a fresh directory below t.TempDir().
func mustInit(t testing.TB, hosts ...string) Paths {
	t.Helper()
	p, err := InitCA(filepath.Join(t.TempDir(), "pki"), hosts, false)
	if err != nil {
		t.Fatalf("InitCA: %v", err)
	}
	return p
}

func mustCert(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	c, err := readLeaf(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustRead(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %v, want %v", path, got, want)
	}
}

func checkP256(t *testing.T, c *x509.Certificate) {
	t.Helper()
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("%q: public key %T, want ECDSA P-256", c.Subject.CommonName, c.PublicKey)
	}
	if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
		t.Errorf("%q: serial %v is not a positive 128-bit number", c.Subject.CommonName, c.SerialNumber)
	}
	if len(c.SubjectKeyId) != 20 {
		t.Errorf("%q: SubjectKeyId %x, want 20 bytes", c.Subject.CommonName, c.SubjectKeyId)
	}
}

func days(d time.Duration) int { return int(d.Round(24*time.Hour) / (24 * time.Hour)) }

func TestInitCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "pki")
	p, err := initCA(dir, []string{"hub.example.test", "192.0.2.7", " HUB2.Example.Test. ", "2001:db8::1", "localhost"}, false, t0)
	if err != nil {
		t.Fatal(err)
	}
	checkMode(t, dir, 0o700)
	checkMode(t, p.CAKey, 0o600)
	checkMode(t, p.ServerKey, 0o600)
	checkMode(t, p.CACert, 0o644)
	checkMode(t, p.ServerCert, 0o644)

	ca := mustCert(t, p.CACert)
	checkP256(t, ca)
	if !ca.IsCA || !ca.BasicConstraintsValid || ca.MaxPathLen != 0 || !ca.MaxPathLenZero {
		t.Errorf("CA basic constraints: IsCA=%v valid=%v MaxPathLen=%d zero=%v", ca.IsCA, ca.BasicConstraintsValid, ca.MaxPathLen, ca.MaxPathLenZero)
	}
	if ca.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("CA KeyUsage = %v", ca.KeyUsage)
	}
	if got := days(ca.NotAfter.Sub(t0)); got != 3650 {
		t.Errorf("CA valid for %d days, want 3650", got)
	}
	if !ca.NotBefore.Before(t0) {
		t.Errorf("CA NotBefore %v not backdated before %v", ca.NotBefore, t0)
	}

	srv := mustCert(t, p.ServerCert)
	checkP256(t, srv)
	if srv.IsCA {
		t.Error("server certificate is a CA")
	}
	if !slices.Equal(srv.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("server ExtKeyUsage = %v, want [ServerAuth]", srv.ExtKeyUsage)
	}
	if srv.KeyUsage != x509.KeyUsageDigitalSignature {
		t.Errorf("server KeyUsage = %v", srv.KeyUsage)
	}
	if got, want := srv.DNSNames, []string{"localhost", "hub.example.test", "hub2.example.test"}; !slices.Equal(got, want) {
		t.Errorf("DNS SANs = %q, want %q", got, want)
	}
	var ips []string
	for _, ip := range srv.IPAddresses {
		ips = append(ips, ip.String())
	}
	if want := []string{"127.0.0.1", "::1", "192.0.2.7", "2001:db8::1"}; !slices.Equal(ips, want) {
		t.Errorf("IP SANs = %q, want %q", ips, want)
	}
	if got := days(srv.NotAfter.Sub(t0)); got != 825 {
		t.Errorf("server valid for %d days, want 825", got)
	}
	if !bytes.Equal(srv.AuthorityKeyId, ca.SubjectKeyId) {
		t.Errorf("server AuthorityKeyId %x != CA SubjectKeyId %x", srv.AuthorityKeyId, ca.SubjectKeyId)
	}
	if srv.SerialNumber.Cmp(ca.SerialNumber) == 0 {
		t.Error("server and CA share a serial number")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: t0, DNSName: "hub2.example.test"}); err != nil {
		t.Errorf("server certificate does not verify: %v", err)
	}
	if _, err := srv.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: t0,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("server certificate verifies for client authentication")
	}
}

func TestInitCARefusesOverwrite(t *testing.T) {
	p := mustInit(t)
	before := map[string][]byte{}
	for _, f := range []string{p.CACert, p.CAKey, p.ServerCert, p.ServerKey} {
		before[f] = mustRead(t, f)
	}

	_, err := InitCA(p.Dir, nil, false)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second InitCA: err = %v, want fs.ErrExist", err)
	}
	if !strings.Contains(err.Error(), p.CAKey) || !strings.HasPrefix(err.Error(), "certs: ") {
		t.Errorf("error %q does not start with certs: and name %s", err, p.CAKey)
	}
	for f, b := range before {
		if !bytes.Equal(mustRead(t, f), b) {
			t.Errorf("%s changed although overwriting was refused", f)
		}
	}

	if _, err := InitCA(p.Dir, nil, true); err != nil {
		t.Fatalf("InitCA with force: %v", err)
	}
	for f, b := range before {
		if bytes.Equal(mustRead(t, f), b) {
			t.Errorf("%s not replaced with force", f)
		}
	}
	checkMode(t, p.CAKey, 0o600)
	checkMode(t, p.ServerKey, 0o600)
	if _, err := loadIssuer(p, time.Now()); err != nil {
		t.Errorf("forced PKI unusable: %v", err)
	}
}

// A single stray file stops InitCA before it writes anything.
func TestInitCAStrayFile(t *testing.T) {
	dir := t.TempDir()
	p := PathsIn(dir)
	if err := os.WriteFile(p.ServerKey, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := InitCA(dir, nil, false)
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), ServerKeyFile) {
		t.Fatalf("err = %v, want fs.ErrExist naming %s", err, ServerKeyFile)
	}
	for _, f := range []string{p.CACert, p.CAKey, p.ServerCert} {
		if _, err := os.Lstat(f); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s was written although InitCA failed", f)
		}
	}
	if got := string(mustRead(t, p.ServerKey)); got != "precious" {
		t.Errorf("server.key = %q", got)
	}
}

func TestIssueDevice(t *testing.T) {
	p := mustInit(t)
	crtFile, keyFile, err := IssueDevice(p.Dir, "pi-tank_01.a", false)
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(p.Dir, "devices", "pi-tank_01.a.crt"); crtFile != want {
		t.Errorf("cert file %s, want %s", crtFile, want)
	}
	checkMode(t, keyFile, 0o600)
	checkMode(t, crtFile, 0o644)
	checkMode(t, filepath.Dir(crtFile), 0o700)

	c := mustCert(t, crtFile)
	checkP256(t, c)
	if c.Subject.CommonName != "pi-tank_01.a" {
		t.Errorf("CN = %q", c.Subject.CommonName)
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != "urn:outpost:device:pi-tank_01.a" {
		t.Errorf("URI SANs = %v", c.URIs)
	}
	if !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ExtKeyUsage = %v, want [ClientAuth]", c.ExtKeyUsage)
	}
	roots := x509.NewCertPool()
	roots.AddCert(mustCert(t, p.CACert))
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("device certificate does not verify for client auth: %v", err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots}); err == nil {
		t.Error("device certificate verifies for server auth")
	}

	keyBefore := mustRead(t, keyFile)
	if _, _, err := IssueDevice(p.Dir, "pi-tank_01.a", false); !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), keyFile) {
		t.Errorf("reissue without force: err = %v, want fs.ErrExist naming %s", err, keyFile)
	}
	if !bytes.Equal(mustRead(t, keyFile), keyBefore) {
		t.Error("device key changed although overwriting was refused")
	}
	if _, _, err := IssueDevice(p.Dir, "pi-tank_01.a", true); err != nil {
		t.Errorf("reissue with force: %v", err)
	}
	if bytes.Equal(mustRead(t, keyFile), keyBefore) {
		t.Error("device key not replaced with force")
	}
	checkMode(t, keyFile, 0o600)
}

func TestIssueDeviceErrors(t *testing.T) {
	t.Run("no CA", func(t *testing.T) {
		dir := t.TempDir()
		_, _, err := IssueDevice(dir, "dev1", false)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), CACertFile) {
			t.Errorf("err = %v, want fs.ErrNotExist naming %s", err, CACertFile)
		}
	})
	t.Run("CA key does not match", func(t *testing.T) {
		p := mustInit(t)
		if err := os.Rename(p.ServerKey, p.CAKey); err != nil {
			t.Fatal(err)
		}
		_, _, err := IssueDevice(p.Dir, "dev1", false)
		if !errors.Is(err, ErrBadPKI) || !strings.Contains(err.Error(), "is not the key of") {
			t.Errorf("err = %v, want ErrBadPKI key mismatch", err)
		}
	})
	t.Run("CA expired", func(t *testing.T) {
		p := mustInit(t)
		_, _, err := issueDevice(p.Dir, "dev1", false, time.Now().Add(CAValidity+time.Hour))
		if !errors.Is(err, ErrBadPKI) {
			t.Errorf("err = %v, want ErrBadPKI", err)
		}
	})
	t.Run("leaf validity capped by CA", func(t *testing.T) {
		p := mustInit(t)
		late := time.Now().Add(CAValidity - 10*24*time.Hour)
		crt, _, err := issueDevice(p.Dir, "dev1", false, late)
		if err != nil {
			t.Fatal(err)
		}
		if ca, c := mustCert(t, p.CACert), mustCert(t, crt); c.NotAfter.After(ca.NotAfter) {
			t.Errorf("device NotAfter %v after CA NotAfter %v", c.NotAfter, ca.NotAfter)
		}
	})
}

func TestValidDeviceID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"a", true},
		{"pi-01", true},
		{"Tank_3.b", true},
		{"0abc", true},
		{"_x", true},
		{strings.Repeat("x", 64), true},
		{"", false},
		{strings.Repeat("x", 65), false},
		{".hidden", false},
		{"-rf", false},
		{"..", false},
		{"a/b", false},
		{"../ca", false},
		{"a b", false},
		{"dev\x00", false},
		{"dév", false},
		{"a+b", false},
	} {
		err := ValidDeviceID(tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("ValidDeviceID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidID) {
			t.Errorf("ValidDeviceID(%q) = %v, want ErrInvalidID", tc.id, err)
		}
		if !tc.ok {
			if _, _, err := IssueDevice(t.TempDir(), tc.id, false); !errors.Is(err, ErrInvalidID) {
				t.Errorf("IssueDevice(%q) = %v, want ErrInvalidID", tc.id, err)
			}
		}
	}
}

func TestParseHost(t *testing.T) {
	for _, tc := range []struct {
		in, name, ip string // ip "" means a DNS name
		bad          string // error substring
	}{
		{in: "hub.local", name: "hub.local"},
		{in: "HUB.Example.COM.", name: "hub.example.com"},
		{in: "*.fleet.example", name: "*.fleet.example"},
		{in: "outpost_hub", name: "outpost_hub"},
		{in: "10.0.0.5", ip: "10.0.0.5"},
		{in: "[fd00::5]", ip: "fd00::5"},
		{in: "::ffff:10.1.2.3", ip: "10.1.2.3"},
		{in: "", bad: "empty"},
		{in: "https://hub", bad: "not a URL"},
		{in: "hub:8883", bad: "remove the port"},
		{in: "[::1]:8883", bad: "remove the port"},
		{in: "fe80::1%eth0", bad: "zone"},
		{in: "a..b", bad: "label"},
		{in: "-hub", bad: "start or end"},
		{in: "hub-", bad: "start or end"},
		{in: "h*b.example", bad: "wildcard"},
		{in: "a.*.example", bad: "wildcard"},
		{in: "*", bad: "wildcard"},
		{in: "hub example", bad: "not allowed"},
		{in: strings.Repeat("a", 64) + ".example", bad: "63"},
	} {
		name, ip, err := parseHost(tc.in)
		if tc.bad != "" {
			if !errors.Is(err, ErrInvalidHost) || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("parseHost(%q) err = %v, want ErrInvalidHost containing %q", tc.in, err, tc.bad)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseHost(%q): %v", tc.in, err)
			continue
		}
		gotIP := ""
		if ip.IsValid() {
			gotIP = ip.String()
		}
		if name != tc.name || gotIP != tc.ip {
			t.Errorf("parseHost(%q) = %q, %q; want %q, %q", tc.in, name, gotIP, tc.name, tc.ip)
		}
	}
	if _, err := InitCA(t.TempDir(), []string{"hub:8883"}, false); !errors.Is(err, ErrInvalidHost) {
		t.Errorf("InitCA with a bad host: %v", err)
	}
}

func TestEnsureHubPKI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	p, created, err := EnsureHubPKI(dir, []string{"hub.lan"})
	if err != nil || !created {
		t.Fatalf("first start: created=%v err=%v", created, err)
	}
	caBefore := mustRead(t, p.CACert)
	srvBefore := mustRead(t, p.ServerCert)

	_, created, err = EnsureHubPKI(dir, []string{"hub.lan"})
	if err != nil || created {
		t.Fatalf("second start: created=%v err=%v", created, err)
	}
	if !bytes.Equal(mustRead(t, p.CACert), caBefore) || !bytes.Equal(mustRead(t, p.ServerCert), srvBefore) {
		t.Fatal("second start changed the PKI")
	}

	// A host the server certificate lacks is reported, not silently added.
	_, _, err = EnsureHubPKI(dir, []string{"other.lan"})
	if !errors.Is(err, ErrBadPKI) || !strings.Contains(err.Error(), `"other.lan"`) {
		t.Errorf("uncovered host: err = %v", err)
	}
	_, _, err = EnsureHubPKI(dir, []string{"10.9.9.9"})
	if !errors.Is(err, ErrBadPKI) || !strings.Contains(err.Error(), "10.9.9.9") {
		t.Errorf("uncovered IP: err = %v", err)
	}
	// An expired server certificate is reported.
	if _, _, err := ensureHubPKI(dir, nil, time.Now().Add(ServerValidity+time.Hour)); !errors.Is(err, ErrBadPKI) {
		t.Errorf("expired server certificate: err = %v", err)
	}

	// The CA key may live offline.
	caKey := mustRead(t, p.CAKey)
	if err := os.Remove(p.CAKey); err != nil {
		t.Fatal(err)
	}
	if _, created, err := EnsureHubPKI(dir, nil); err != nil || created {
		t.Errorf("without ca.key: created=%v err=%v", created, err)
	}
	if err := os.WriteFile(p.CAKey, caKey, 0o600); err != nil {
		t.Fatal(err)
	}

	// Missing server files are reissued by the same CA.
	for _, f := range []string{p.ServerCert, p.ServerKey} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	if _, created, err := EnsureHubPKI(dir, []string{"other.lan"}); err != nil || !created {
		t.Fatalf("reissue server: created=%v err=%v", created, err)
	}
	if !bytes.Equal(mustRead(t, p.CACert), caBefore) {
		t.Error("reissuing the server certificate replaced the CA")
	}
	if err := mustCert(t, p.ServerCert).VerifyHostname("other.lan"); err != nil {
		t.Error(err)
	}

	// Anything else is an incomplete PKI.
	if err := os.Remove(p.CACert); err != nil {
		t.Fatal(err)
	}
	_, _, err = EnsureHubPKI(dir, nil)
	if !errors.Is(err, ErrBadPKI) || !strings.Contains(err.Error(), "missing ca.crt") {
		t.Errorf("missing ca.crt: err = %v", err)
	}
}

func TestIssueServerKeepsCA(t *testing.T) {
	p := mustInit(t)
	ca := mustRead(t, p.CACert)
	if _, err := IssueServer(p.Dir, []string{"new.lan"}, false); !errors.Is(err, fs.ErrExist) {
		t.Errorf("IssueServer without force: err = %v", err)
	}
	if _, err := IssueServer(p.Dir, []string{"new.lan"}, true); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustRead(t, p.CACert), ca) {
		t.Error("IssueServer changed ca.crt")
	}
	if err := checkServer(p, []string{"new.lan"}, time.Now()); err != nil {
		t.Error(err)
	}
}
