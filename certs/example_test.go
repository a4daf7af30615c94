package certs_test

import (
	"crypto/tls"
	"fmt"
	"os"

	"github.com/outpost-iot/outpost/certs"
)

// The hub creates its PKI on first start and serves with it; a gateway
// gets a device certificate and pins the hub's CA.
func Example() {
	dir, err := os.MkdirTemp("", "outpost-pki")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = os.RemoveAll(dir) }()

	p, created, err := certs.EnsureHubPKI(dir, []string{"hub.lan", "192.168.1.10"})
	if err != nil {
		fmt.Println(err)
		return
	}
	srv, err := certs.LoadServerTLS(p.ServerCert, p.ServerKey, p.CACert)
	if err != nil {
		fmt.Println(err)
		return
	}
	devCrt, devKey, err := certs.IssueDevice(dir, "tank-pi-01", false)
	if err != nil {
		fmt.Println(err)
		return
	}
	gw, err := certs.DeviceTLS(p.CACert, devCrt, devKey) // copy ca.crt, devCrt and devKey to the Pi
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(created, srv.ClientAuth == tls.VerifyClientCertIfGiven, len(gw.Certificates))
	// Output: true true 1
}
