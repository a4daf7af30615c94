// Command outpost-gateway runs on a Raspberry Pi next to the probes: it
// samples sensors, evaluates alert rules locally, keeps everything in a
// durable outbox and sends it to the hub over TLS MQTT, outbound only.
// Usage: outpost-gateway run|check|scan|calibrate|version [flags].
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

	"github.com/outpost-iot/outpost/gateway"
	"github.com/outpost-iot/outpost/internal/buildinfo"
	"github.com/outpost-iot/outpost/internal/config"
	"github.com/outpost-iot/outpost/internal/logx"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "outpost-gateway:", err)
		}
		os.Exit(1)
	}
}

const usage = `usage: outpost-gateway <command> [flags]

commands:
  run        run the gateway
  check      validate the configuration (every problem, by key) and exit
  scan       list the sensors found on the I2C and 1-Wire buses
  calibrate  take a pH calibration point: calibrate ph --sensor NAME --buffer 7.00
  version    print the version
`

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, buildinfo.String("outpost-gateway"))
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "scan":
		return scan(args[1:], stdout, stderr)
	case "calibrate":
		return calibrate(args[1:], stdout, stderr)
	case "run", "check":
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
	cfg, err := loadConfig("outpost-gateway "+args[0], args[1:], stderr)
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
	g, err := gateway.New(ctx, cfg, log, buildinfo.Version)
	if err != nil {
		return err
	}
	return g.Run(ctx)
}

// loadConfig applies defaults → file → environment → flags, then validates.
func loadConfig(name string, args []string, stderr io.Writer) (gateway.Config, error) {
	cfg := gateway.DefaultConfig()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "", "YAML configuration file")
	hub := fs.String("hub", "", "hub MQTT TLS address host:port")
	ca := fs.String("ca", "", "the hub's CA certificate")
	tokenFile := fs.String("token-file", "", "file holding the device token")
	dataDir := fs.String("data-dir", "", "data directory (outbox)")
	deviceID := fs.String("device-id", "", "device id (= MQTT client id, the token's subject)")
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
	for name, p := range map[string]struct {
		dst *string
		v   string
	}{
		"hub": {&cfg.Hub.Address, *hub}, "ca": {&cfg.Hub.CA, *ca}, "token-file": {&cfg.Hub.TokenFile, *tokenFile},
		"data-dir": {&cfg.DataDir, *dataDir}, "device-id": {&cfg.DeviceID, *deviceID}, "log-level": {&cfg.Log.Level, *logLevel},
	} {
		if set[name] {
			*p.dst = p.v
		}
	}
	return cfg, cfg.Validate()
}
