package certs

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

// result is what each side of a loopback TLS exchange saw.
type result struct {
	client, server error
	state          tls.ConnectionState // server side
}

// exchange listens on network (tcp4/tcp6) loopback, dials it with cli and
// serverName, and has the two sides complete a handshake and swap one
// message each way, so that a late TLS 1.3 alert (client certificate
// rejected after the client finished) reaches the client too.
func exchange(t *testing.T, network string, srv, cli *tls.Config, serverName string) result {
	t.Helper()
	host := "127.0.0.1"
	if network == "tcp6" {
		host = "::1"
	}
	ln, err := net.Listen(network, net.JoinHostPort(host, "0"))
	if err != nil {
		if network == "tcp6" {
			t.Skipf("IPv6 loopback unavailable: %v", err)
		}
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()

	type srvResult struct {
		err   error
		state tls.ConnectionState
	}
	done := make(chan srvResult, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- srvResult{err: err}
			return
		}
		defer func() { _ = c.Close() }()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, srv)
		if err := tc.Handshake(); err != nil {
			done <- srvResult{err: err}
			return
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(tc, buf); err != nil {
			done <- srvResult{err: err}
			return
		}
		_, err = tc.Write([]byte("pong"))
		done <- srvResult{err: err, state: tc.ConnectionState()}
	}()

	cli = cli.Clone()
	cli.ServerName = serverName
	var cerr error
	c, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, cli)
	if cerr = tc.Handshake(); cerr == nil {
		if _, cerr = tc.Write([]byte("ping")); cerr == nil {
			buf := make([]byte, 4)
			if _, cerr = io.ReadFull(tc, buf); cerr == nil && string(buf) != "pong" {
				cerr = errors.New("bad reply " + string(buf))
			}
		}
	}
	_ = tc.Close()
	r := <-done
	return result{client: cerr, server: r.err, state: r.state}
}

func mustServerTLS(t testing.TB, p Paths, clientCA string) *tls.Config {
	t.Helper()
	cfg, err := LoadServerTLS(p.ServerCert, p.ServerKey, clientCA)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func mustClientTLS(t testing.TB, caFile string) *tls.Config {
	t.Helper()
	cfg, err := ClientTLS(caFile)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestHandshakeSANs(t *testing.T) {
	p := mustInit(t, "hub.example.test", "192.0.2.7")
	srv := mustServerTLS(t, p, "")
	cli := mustClientTLS(t, p.CACert)
	for _, tc := range []struct {
		network, serverName string
		ok                  bool
	}{
		{"tcp4", "localhost", true},
		{"tcp4", "127.0.0.1", true},
		{"tcp6", "::1", true},
		{"tcp6", "localhost", true},
		{"tcp4", "hub.example.test", true},
		{"tcp4", "HUB.example.test", true},
		{"tcp4", "192.0.2.7", true},
		{"tcp4", "evil.example.test", false},
		{"tcp4", "192.0.2.8", false},
	} {
		t.Run(tc.network+"/"+tc.serverName, func(t *testing.T) {
			r := exchange(t, tc.network, srv, cli, tc.serverName)
			if tc.ok {
				if r.client != nil || r.server != nil {
					t.Fatalf("client: %v; server: %v", r.client, r.server)
				}
				if r.state.Version != tls.VersionTLS13 {
					t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(r.state.Version))
				}
				return
			}
			var herr x509.HostnameError
			if !errors.As(r.client, &herr) {
				t.Fatalf("client error = %v, want x509.HostnameError", r.client)
			}
		})
	}
}

func TestHandshakeOtherCAFails(t *testing.T) {
	p := mustInit(t)
	other := mustInit(t)
	r := exchange(t, "tcp4", mustServerTLS(t, p, ""), mustClientTLS(t, other.CACert), "localhost")
	var uerr x509.UnknownAuthorityError
	if !errors.As(r.client, &uerr) {
		t.Fatalf("client error = %v, want x509.UnknownAuthorityError", r.client)
	}
	if r.server == nil {
		t.Error("server completed a handshake the client rejected")
	}
}

func TestHandshakeTLSVersionFloor(t *testing.T) {
	p := mustInit(t)
	cli := mustClientTLS(t, p.CACert)
	cli.MinVersion, cli.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	r := exchange(t, "tcp4", mustServerTLS(t, p, ""), cli, "localhost")
	if r.client == nil || r.server == nil || !strings.Contains(r.server.Error(), "version") {
		t.Fatalf("TLS 1.1 client: client %v, server %v; want a protocol version failure", r.client, r.server)
	}
	cli.MinVersion, cli.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	if r := exchange(t, "tcp4", mustServerTLS(t, p, ""), cli, "localhost"); r.client != nil || r.server != nil {
		t.Fatalf("TLS 1.2 client: client %v, server %v", r.client, r.server)
	}
}

func TestMutualTLS(t *testing.T) {
	p := mustInit(t)
	if _, _, err := IssueDevice(p.Dir, "gw-7", false); err != nil {
		t.Fatal(err)
	}
	devCrt, devKey := p.Device("gw-7")
	dev, err := DeviceTLS(p.CACert, devCrt, devKey)
	if err != nil {
		t.Fatal(err)
	}

	other := mustInit(t)
	if _, _, err := IssueDevice(other.Dir, "gw-7", false); err != nil {
		t.Fatal(err)
	}
	otherCrt, otherKey := other.Device("gw-7")
	foreign, err := DeviceTLS(p.CACert, otherCrt, otherKey) // trusts the hub, but its cert is from another CA
	if err != nil {
		t.Fatal(err)
	}

	// Go's client only sends a certificate whose issuer the server listed as
	// acceptable; force the foreign one onto the wire.
	forced := foreign.Clone()
	forcedPair := forced.Certificates[0]
	forced.Certificates = nil
	forced.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &forcedPair, nil }

	// The hub's own server certificate is signed by the right CA but lacks
	// ClientAuth: presenting it as a client certificate must fail.
	srvPair, err := tls.LoadX509KeyPair(p.ServerCert, p.ServerKey)
	if err != nil {
		t.Fatal(err)
	}
	wrongUsage := mustClientTLS(t, p.CACert)
	wrongUsage.Certificates = []tls.Certificate{srvPair}

	required := mustServerTLS(t, p, p.CACert)
	required.ClientAuth = tls.RequireAndVerifyClientCert
	optional := mustServerTLS(t, p, p.CACert)
	if optional.ClientAuth != tls.VerifyClientCertIfGiven {
		t.Errorf("default ClientAuth = %v, want VerifyClientCertIfGiven", optional.ClientAuth)
	}

	for _, tc := range []struct {
		name   string
		srv    *tls.Config
		cli    *tls.Config
		wantID string // "" = handshake must fail ...
		srvErr string // ... with this server error
	}{
		{"device cert required", required, dev, "gw-7", ""},
		{"device cert optional", optional, dev, "gw-7", ""},
		{"no cert where required", required, mustClientTLS(t, p.CACert), "", "didn't provide a certificate"},
		{"cert from another CA", required, foreign, "", "didn't provide a certificate"},
		{"cert from another CA, forced", required, forced, "", "unknown authority"},
		{"cert from another CA, forced, optional", optional, forced, "", "unknown authority"},
		{"server cert as client cert", required, wrongUsage, "", "incompatible key usage"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := exchange(t, "tcp4", tc.srv, tc.cli, "localhost")
			if tc.wantID == "" {
				if r.server == nil || r.client == nil || !strings.Contains(r.server.Error(), tc.srvErr) {
					t.Fatalf("client error %v, server error %v; want both to fail, the server with %q", r.client, r.server, tc.srvErr)
				}
				return
			}
			if r.client != nil || r.server != nil {
				t.Fatalf("client: %v; server: %v", r.client, r.server)
			}
			id, err := PeerDeviceID(r.state)
			if err != nil || id != tc.wantID {
				t.Errorf("PeerDeviceID = %q, %v; want %q", id, err, tc.wantID)
			}
		})
	}

	// Where a certificate is optional, a client without an acceptable one
	// connects, but with no device identity.
	for name, cli := range map[string]*tls.Config{"no cert": mustClientTLS(t, p.CACert), "cert from another CA": foreign} {
		t.Run(name+" where optional", func(t *testing.T) {
			r := exchange(t, "tcp4", optional, cli, "localhost")
			if r.client != nil || r.server != nil {
				t.Fatalf("client: %v; server: %v", r.client, r.server)
			}
			if id, err := PeerDeviceID(r.state); err == nil {
				t.Errorf("PeerDeviceID = %q, want an error", id)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	p := mustInit(t)
	if _, _, err := IssueDevice(p.Dir, "d1", false); err != nil {
		t.Fatal(err)
	}
	devCrt, devKey := p.Device("d1")
	for _, tc := range []struct {
		name string
		run  func() error
		want string
	}{
		{"leaf as CA file", func() error { _, err := ClientTLS(p.ServerCert); return err }, "not a CA certificate"},
		{"key as CA file", func() error { _, err := ClientTLS(p.CAKey); return err }, `"PRIVATE KEY", want CERTIFICATE`},
		{"missing CA file", func() error { _, err := ClientTLS(p.Dir + "/nope.crt"); return err }, "no such file"},
		{"mismatched key", func() error { _, err := LoadServerTLS(p.ServerCert, p.CAKey, ""); return err }, "key pair"},
		{"device cert as server", func() error { _, err := LoadServerTLS(devCrt, devKey, ""); return err }, "ServerAuth"},
		{"server cert as device", func() error { _, err := DeviceTLS(p.CACert, p.ServerCert, p.ServerKey); return err }, "ClientAuth"},
		{"expired server", func() error {
			_, err := loadServerTLS(p.ServerCert, p.ServerKey, "", time.Now().Add(ServerValidity+time.Hour))
			return err
		}, "valid only from"},
		{"server not yet valid", func() error {
			_, err := loadServerTLS(p.ServerCert, p.ServerKey, "", time.Now().Add(-2*Backdate))
			return err
		}, "valid only from"},
		{"expired device", func() error {
			_, err := deviceTLS(p.CACert, devCrt, devKey, time.Now().Add(DeviceValidity+time.Hour))
			return err
		}, "valid only from"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "certs: ") {
				t.Errorf("err = %v, want certs: ... %q", err, tc.want)
			}
		})
	}
}

func TestConfigsPinTLS12(t *testing.T) {
	p := mustInit(t)
	devCrt, devKey, err := IssueDevice(p.Dir, "d1", false)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := DeviceTLS(p.CACert, devCrt, devKey)
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*tls.Config{
		"server": mustServerTLS(t, p, p.CACert), "client": mustClientTLS(t, p.CACert), "device": dev,
	} {
		if cfg.MinVersion != tls.VersionTLS12 {
			t.Errorf("%s MinVersion = %s, want TLS 1.2", name, tls.VersionName(cfg.MinVersion))
		}
	}
	if cfg := mustClientTLS(t, p.CACert); cfg.RootCAs == nil || cfg.InsecureSkipVerify {
		t.Error("client config does not pin the CA")
	}
}

// PeerDeviceID trusts only a verified leaf whose CN, URI SAN and usage agree.
func TestPeerDeviceID(t *testing.T) {
	p := mustInit(t)
	now := time.Now()
	ca, err := loadIssuer(p, now)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(cn string, uris []string, usage []x509.ExtKeyUsage) *x509.Certificate {
		tmpl := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, ExtKeyUsage: usage}
		for _, u := range uris {
			pu, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			tmpl.URIs = append(tmpl.URIs, pu)
		}
		crtPEM, _, err := ca.issueLeaf(tmpl, DeviceValidity, now)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := pem.Decode(crtPEM)
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	for _, tc := range []struct {
		name string
		leaf *x509.Certificate
		want string // "" = error
	}{
		{"issued device", leaf("gw-1", []string{"urn:outpost:device:gw-1"}, client), "gw-1"},
		{"no URI SAN", leaf("gw-1", nil, client), "gw-1"},
		{"URI names another device", leaf("gw-1", []string{"urn:outpost:device:gw-2"}, client), ""},
		{"server usage only", leaf("gw-1", []string{"urn:outpost:device:gw-1"}, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}), ""},
		{"CN not a device id", leaf("../ca", nil, client), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{tc.leaf, ca.cert}}}
			id, err := PeerDeviceID(cs)
			if tc.want == "" {
				if err == nil {
					t.Errorf("PeerDeviceID = %q, want an error", id)
				}
				return
			}
			if err != nil || id != tc.want {
				t.Errorf("PeerDeviceID = %q, %v; want %q", id, err, tc.want)
			}
		})
	}
	// Presented but unverified certificates are not an identity.
	unverified := tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf("gw-1", nil, client)}}
	if id, err := PeerDeviceID(unverified); err == nil {
		t.Errorf("PeerDeviceID of an unverified certificate = %q", id)
	}
}
