// Command outpost-gateway runs on a Raspberry Pi next to the probes: it
// samples sensors, evaluates alert rules locally, keeps everything in a
// durable outbox and sends it to the hub over TLS MQTT, outbound only.
// Usage: outpost-gateway run|check|scan|calibrate|version [flags].
//
// "run" is a small supervisor: it starts "run --worker" (the gateway
// itself) as a child process from the binary's path and starts it again
// when it exits, at once when it exits with status 75 (an update or a
// rollback put another binary in place), otherwise after a backoff. It
// forwards SIGTERM and SIGINT and exits when the worker does. A new
// version that exits before it became healthy is rolled back by the
// supervisor (firmware-ota/updater).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/outpost-iot/outpost/firmware-ota/updater"
	"github.com/outpost-iot/outpost/gateway"
	"github.com/outpost-iot/outpost/internal/buildinfo"
	"github.com/outpost-iot/outpost/internal/config"
	"github.com/outpost-iot/outpost/internal/logx"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		var code exitCode
		if errors.As(err, &code) {
			os.Exit(int(code))
		}
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "outpost-gateway:", err)
		}
		os.Exit(1)
	}
}

const usage = `usage: outpost-gateway <command> [flags]

commands:
  run        run the gateway (a supervisor that runs and restarts "run --worker")
  check      validate the configuration (every problem, by key) and exit
  scan       list the sensors found on the I2C and 1-Wire buses
  calibrate  take a pH calibration point: calibrate ph --sensor NAME --buffer 7.00
  install    set up this (running) Pi: binary, config, systemd unit, I2C and 1-Wire
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
	case "install":
		return install(args[1:], stdout, stderr)
	case "run", "check":
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
	cfg, opts, err := loadConfig("outpost-gateway "+args[0], args[1:], stderr)
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
	if !opts.worker {
		return supervise(cfg, args[1:], log)
	}
	return worker(cfg, log, stderr)
}

// exitCode makes main exit with that status, without a message.
type exitCode int

func (c exitCode) Error() string { return fmt.Sprintf("exit status %d", int(c)) }

// gatewayGCPercent is the worker's GOGC unless the environment sets one.
const gatewayGCPercent = 30

// worker runs the gateway; after an update or rollback it exits with
// updater.ExitRestart so that the supervisor starts the new binary.
func worker(cfg gateway.Config, log *slog.Logger, stderr io.Writer) error {
	if buildinfo.TestFault == "crash-at-start" {
		fmt.Fprintln(stderr, "outpost-gateway: built to crash at start (buildinfo.TestFault)")
		return exitCode(2)
	}
	if _, set := os.LookupEnv("GOGC"); !set {
		// A small, steady heap: collect at 30 % growth rather than 100 %.
		// The soak benchmark: RSS 21.7 → 19.5 MiB, CPU per reading within
		// its noise (docs/benchmarks.md). GOGC in the environment wins.
		debug.SetGCPercent(gatewayGCPercent)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if gateway.NeedsClaim(cfg) {
		if err := gateway.Claim(ctx, cfg, log, buildinfo.Version); err != nil {
			return err
		}
	}
	g, err := gateway.New(ctx, cfg, log, buildinfo.Version)
	if err != nil {
		return err
	}
	err = g.Run(ctx)
	if errors.Is(err, gateway.ErrRestart) {
		log.Info("gateway: exiting so that the binary now in place is started", "status", updater.ExitRestart, "err", err)
		return exitCode(updater.ExitRestart)
	}
	return err
}

// supervise runs "run --worker" with the same flags and restarts it.
func supervise(cfg gateway.Config, args []string, log *slog.Logger) error {
	bin, err := gateway.Binary(cfg)
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	sup := &updater.Supervisor{
		Path:     bin,
		Args:     append([]string{"run", "--worker"}, args...),
		StateDir: gateway.OTAStateDir(cfg),
		Signals:  sigs,
		Logger:   log.With("component", "supervisor"),
	}
	code, err := sup.Run(context.Background())
	if err != nil {
		return err
	}
	if code != 0 {
		return exitCode(code)
	}
	return nil
}

type runOptions struct {
	worker bool
}

// loadConfig applies defaults → file → environment → flags, then validates.
func loadConfig(name string, args []string, stderr io.Writer) (gateway.Config, runOptions, error) {
	cfg := gateway.DefaultConfig()
	var opts runOptions
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "", "YAML configuration file")
	hub := fs.String("hub", "", "hub MQTT TLS address host:port")
	ca := fs.String("ca", "", "the hub's CA certificate")
	tokenFile := fs.String("token-file", "", "file holding the device token")
	claimToken := fs.String("claim-token", "", "file holding a one-time claim token, used while the token file is missing or empty")
	dataDir := fs.String("data-dir", "", "data directory (outbox)")
	deviceID := fs.String("device-id", "", "device id (= MQTT client id, the token's subject)")
	logLevel := fs.String("log-level", "", "debug|info|warn|error")
	releasePub := fs.String("release-pubkey", "", "release public key file (PEM) trusted for OTA updates")
	fs.BoolVar(&opts.worker, "worker", false, "run the gateway itself, not the supervisor (what the supervisor starts)")
	if err := fs.Parse(args); err != nil {
		return cfg, opts, err
	}
	if fs.NArg() > 0 {
		return cfg, opts, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if err := config.LoadYAML(*file, &cfg); err != nil {
		return cfg, opts, err
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
		"release-pubkey": {&cfg.ReleasePubKey, *releasePub}, "claim-token": {&cfg.Hub.ClaimTokenFile, *claimToken},
	} {
		if set[name] {
			*p.dst = p.v
		}
	}
	if cfg.DeviceID == "" {
		if id, err := gateway.DeriveDeviceID("/"); err == nil {
			cfg.DeviceID = id
		}
	}
	return cfg, opts, cfg.Validate()
}
