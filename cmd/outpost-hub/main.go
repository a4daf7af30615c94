// Command outpost-hub runs the Outpost hub: a TLS MQTT v5 broker that admits
// only token holders, tracks presence, stores telemetry and serves the admin
// API. Usage: outpost-hub serve|check|version [flags].
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/outpost-iot/outpost/hub"
	"github.com/outpost-iot/outpost/internal/buildinfo"
	"github.com/outpost-iot/outpost/internal/config"
	"github.com/outpost-iot/outpost/internal/logx"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "outpost-hub:", err)
		}
		os.Exit(1)
	}
}

const usage = `usage: outpost-hub <command> [flags]

commands:
  serve     run the hub
  check     validate the configuration and exit
  version   print the version
`

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, buildinfo.String("outpost-hub"))
		return nil
	case "serve", "check":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
	cfg, err := loadConfig(args[0], args[1:], stderr)
	if err != nil {
		return err
	}
	if args[0] == "check" {
		fmt.Fprintln(stdout, "configuration ok")
		return nil
	}
	log, err := logx.New(stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h, err := hub.New(ctx, cfg, log, buildinfo.Version)
	if err != nil {
		return err
	}
	return h.Run(ctx)
}

// loadConfig applies defaults → file → environment → flags, then validates.
func loadConfig(cmd string, args []string, stderr io.Writer) (hub.Config, error) {
	cfg := hub.DefaultConfig()
	fs := flag.NewFlagSet("outpost-hub "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "", "YAML configuration file")
	dataDir := fs.String("data-dir", "", "data directory (database, keys, PKI)")
	mqttListen := fs.String("mqtt-listen", "", "MQTT TLS listen address (default :8883)")
	plainListen := fs.String("mqtt-plain-listen", "", "optional plaintext MQTT listener, loopback only")
	httpListen := fs.String("http-listen", "", "HTTPS admin API listen address (default :8443)")
	httpPlain := fs.Bool("http-plain", false, "serve the admin API over plain HTTP (loopback only)")
	tlsCert := fs.String("tls-cert", "", "server certificate (operator's PKI)")
	tlsKey := fs.String("tls-key", "", "server key")
	tlsCA := fs.String("tls-ca", "", "CA certificate clients should trust (logged for them)")
	logLevel := fs.String("log-level", "", "debug|info|warn|error")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if err := config.LoadYAML(*file, &cfg); err != nil {
		return cfg, err
	}
	cfg.ApplyEnv()
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	str := func(name string, dst *string, v string) {
		if set[name] {
			*dst = v
		}
	}
	str("data-dir", &cfg.DataDir, *dataDir)
	str("mqtt-listen", &cfg.MQTT.Listen, *mqttListen)
	str("mqtt-plain-listen", &cfg.MQTT.PlainListen, *plainListen)
	str("http-listen", &cfg.HTTP.Listen, *httpListen)
	str("tls-cert", &cfg.TLS.Cert, *tlsCert)
	str("tls-key", &cfg.TLS.Key, *tlsKey)
	str("tls-ca", &cfg.TLS.CA, *tlsCA)
	str("log-level", &cfg.Log.Level, *logLevel)
	if set["http-plain"] {
		cfg.HTTP.Plain = *httpPlain
	}
	return cfg, cfg.Validate()
}
