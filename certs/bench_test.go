package certs

import (
	"crypto/tls"
	"errors"
	"net"
	"runtime"
	"testing"
	"time"
)

// BenchmarkHandshake measures full (non-resumed) TLS 1.3 handshakes with
// the hub's ECDSA P-256 server certificate over loopback TCP, one key
// exchange group per sub-benchmark. ns/op is the wall time of connect +
// handshake with both sides in this process; server-cpu-ns/op is the CPU
// time of the server's Handshake calls alone (measured on a locked OS
// thread where the platform allows), which is what bounds a hub's
// connection rate.
func BenchmarkHandshake(b *testing.B) {
	p := mustInit(b)
	srv := mustServerTLS(b, p, "")
	for _, g := range []struct {
		name  string
		curve tls.CurveID
	}{
		{"X25519", tls.X25519},
		{"X25519MLKEM768", tls.X25519MLKEM768},
		{"P256", tls.CurveP256},
	} {
		b.Run(g.name, func(b *testing.B) {
			cli := mustClientTLS(b, p.CACert)
			cli.ServerName = "localhost"
			cli.MinVersion = tls.VersionTLS13
			cli.CurvePreferences = []tls.CurveID{g.curve}
			benchHandshake(b, srv, cli, g.curve)
		})
	}
}

func benchHandshake(b *testing.B, srv, cli *tls.Config, curve tls.CurveID) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = ln.Close() }()

	type served struct {
		n   int
		cpu time.Duration
		ok  bool // CPU time was measurable
		err error
	}
	done := make(chan served, 1)
	go func() { // serves until the listener is closed
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		s := served{ok: true}
		defer func() { done <- s }()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := tls.Server(c, srv)
			before, ok1 := threadCPU()
			err = tc.Handshake()
			after, ok2 := threadCPU()
			s.n++
			s.cpu += after - before
			s.ok = s.ok && ok1 && ok2
			if err == nil && tc.ConnectionState().CurveID != curve {
				err = errors.New("negotiated " + tc.ConnectionState().CurveID.String())
			}
			_ = tc.Close()
			if err != nil {
				s.err = err
				return
			}
		}
	}()

	for b.Loop() {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		tc := tls.Client(c, cli)
		if err := tc.Handshake(); err != nil {
			b.Fatal(err)
		}
		_ = tc.Close()
	}
	_ = ln.Close()
	s := <-done
	if s.err != nil {
		b.Fatal(s.err)
	}
	if s.ok && s.n > 0 {
		b.ReportMetric(float64(s.cpu.Nanoseconds())/float64(s.n), "server-cpu-ns/op")
	}
}
