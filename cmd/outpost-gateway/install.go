package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/outpost-iot/outpost/gateway"
	"github.com/outpost-iot/outpost/internal/config"
	"github.com/outpost-iot/outpost/internal/provision"
)

// geteuid is os.Geteuid; tests replace it.
var geteuid = os.Geteuid

// install sets the gateway up on a Pi that is already running: the same
// binary, configuration, user, unit and config.txt lines a card prepared
// with outpostctl flash prepare gets at first boot.
func install(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("outpost-gateway install", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: sudo outpost-gateway install --config gateway.yaml [--hub HOST:PORT] [--ca FILE] [--claim-token FILE] [flags]")
		fs.PrintDefaults()
	}
	file := fs.String("config", "", "gateway configuration (YAML) to install (required)")
	hub := fs.String("hub", "", "hub MQTT TLS address host:port (default: the config's hub.address)")
	ca := fs.String("ca", "", "the hub's CA certificate (default: the file the config's hub.ca names)")
	claim := fs.String("claim-token", "", "file holding a one-time claim token")
	token := fs.String("token", "", "file holding a device token (default: the config's hub.token_file, when it exists)")
	binPath := fs.String("binary-path", provision.DefaultBinary, "the command's path: a symlink to "+provision.RealBinary+", which OTA updates replace")
	user := fs.String("user", provision.DefaultUser, "system user the gateway runs as")
	pin := fs.Int("w1-pin", provision.DefaultW1Pin, "GPIO of the 1-Wire bus (dtoverlay=w1-gpio,gpiopin=N)")
	noStart := fs.Bool("no-start", false, "enable the service but do not start it")
	dry := fs.Bool("dry-run", false, "print what would be done and change nothing (needs no root)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("install: unexpected arguments %v", fs.Args())
	}
	if *file == "" {
		fs.Usage()
		return errors.New("install: --config is required")
	}
	cfgBytes, err := os.ReadFile(*file)
	if err != nil {
		return fmt.Errorf("install: %w", err)
	}
	// The file's own hub.ca and hub.token_file are the defaults for --ca and --token.
	cur := gateway.DefaultConfig()
	if err := config.DecodeYAML(cfgBytes, &cur, *file); err != nil {
		return fmt.Errorf("install: %w", err)
	}
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(filepath.Dir(*file), p)
	}
	if *ca == "" {
		*ca = rel(cur.Hub.CA)
	}
	if *ca == "" {
		return errors.New("install: --ca is required (the config names no hub.ca)")
	}
	if *claim == "" && *token == "" {
		if p := rel(cur.Hub.TokenFile); p != "" {
			if _, err := os.Stat(p); err == nil {
				*token = p
			}
		}
		if *token == "" {
			return errors.New("install: --claim-token (or --token) is required: the config's hub.token_file does not exist yet")
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("install: own executable: %w", err)
	}
	o := provision.InstallOptions{
		Options: provision.Options{Config: cfgBytes, Hub: *hub, User: *user, W1Pin: *pin, BinaryPath: *binPath,
			Writer: "outpost-gateway install", ValidateConfig: validateConfig},
		Self: self, NoStart: *noStart, DryRun: *dry, Geteuid: geteuid,
	}
	for _, f := range []struct {
		path string
		dst  *[]byte
	}{{*ca, &o.CA}, {*claim, &o.ClaimToken}, {*token, &o.DeviceToken}} {
		if f.path == "" {
			continue
		}
		if *f.dst, err = os.ReadFile(f.path); err != nil {
			return fmt.Errorf("install: %w", err)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := provision.Install(ctx, o, stdout)
	if err != nil {
		return err
	}
	if *dry {
		fmt.Fprintln(stdout, "outpost-gateway install --dry-run: would")
		for _, l := range res.Plan {
			fmt.Fprintln(stdout, "  -", l)
		}
		if res.RebootNeeded {
			fmt.Fprintln(stdout, "then a reboot is needed for I2C and 1-Wire")
		}
		return nil
	}
	fmt.Fprintln(stdout, "outpost-gateway installed; journalctl -u outpost-gateway -f shows it running")
	if res.RebootNeeded {
		fmt.Fprintf(stdout, "config.txt changed (%v): reboot for I2C and 1-Wire to come up (sudo reboot)\n", res.ConfigAdded)
	}
	return nil
}

// validateConfig checks the configuration the way run does.
func validateConfig(b []byte) error {
	c := gateway.DefaultConfig()
	if err := config.DecodeYAML(b, &c, "gateway.yaml"); err != nil {
		return err
	}
	return c.Validate()
}
