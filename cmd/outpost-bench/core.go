package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"

	"github.com/outpost-iot/outpost/certs"
	hubbroker "github.com/outpost-iot/outpost/hub/broker"
)

// runCore serves hub/broker.NewCore on --listen with the server certificate
// of the PKI in --pki until ctx ends (SIGTERM from the bench).
func runCore(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("outpost-bench mochi-core", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "TLS MQTT address")
	pki := fs.String("pki", "", "directory made by outpostctl certs init (server certificate and key)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pki == "" {
		return errors.New("mochi-core: --pki is required")
	}
	p := certs.PathsIn(*pki)
	cfg, err := certs.LoadServerTLS(p.ServerCert, p.ServerKey, "")
	if err != nil {
		return err
	}
	srv, err := hubbroker.NewCore(*listen, cfg, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		return err
	}
	if err := srv.Serve(); err != nil {
		return err
	}
	<-ctx.Done()
	return srv.Close()
}
