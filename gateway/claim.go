package gateway

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/outpost-iot/outpost/certs"
	"github.com/outpost-iot/outpost/firmware-ota/manifest"
	"github.com/outpost-iot/outpost/gateway/uplink"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// NeedsClaim reports whether the gateway has no device token yet (the token
// file is missing or empty) and a claim token file is configured: it must
// register by claim before it can run.
func NeedsClaim(cfg Config) bool {
	if cfg.Hub.ClaimTokenFile == "" {
		return false
	}
	b, err := os.ReadFile(cfg.Hub.TokenFile)
	return err != nil || strings.TrimSpace(string(b)) == ""
}

// Claim registers the gateway with the hub by its claim token
// (docs/protocol.md, "Claiming"): it announces the device until the hub
// accepts it, then writes the channel token to hub.token_file (0600,
// fsync, rename) and removes the claim token file if it can. It returns an
// error wrapping uplink.ErrClaimRefused when the claim cannot succeed.
func Claim(ctx context.Context, cfg Config, log *slog.Logger, version string) error {
	raw, err := os.ReadFile(cfg.Hub.ClaimTokenFile)
	if err != nil {
		return fmt.Errorf("gateway: hub.claim_token_file: %w", err)
	}
	claim := strings.TrimSpace(string(raw))
	if strings.Count(claim, ".") != 2 {
		return fmt.Errorf("gateway: hub.claim_token_file %s does not hold a claim token (a JWT: outpostctl claim create)", cfg.Hub.ClaimTokenFile)
	}
	tlsCfg, err := certs.ClientTLS(cfg.Hub.CA)
	if err != nil {
		return fmt.Errorf("gateway: hub.ca: %w", err)
	}
	t := manifest.HostTarget(boardModel())
	arch := t.OS + "/" + t.Arch
	if t.Variant != "" {
		arch += "/" + t.Variant
	}
	log.Info("gateway: no device token yet: registering with the hub by claim", "device", cfg.DeviceID, "hub", cfg.Hub.Address,
		"claim_token_file", cfg.Hub.ClaimTokenFile)
	resp, err := uplink.Claim(ctx, uplink.ClaimConfig{
		Broker: cfg.Hub.Address, TLS: tlsCfg, ClaimToken: claim, Logger: log,
		Request: protocol.ClaimRequest{V: protocol.Version, Device: cfg.DeviceID, Firmware: version, Board: t.Board, Arch: arch},
		Retry:   cfg.Hub.ClaimRetry,
	})
	if err != nil {
		if errors.Is(err, uplink.ErrClaimRefused) {
			log.Error("gateway: the hub refused the claim; create a new one (outpostctl claim create) and replace the file",
				"claim_token_file", cfg.Hub.ClaimTokenFile, "err", err)
		}
		return fmt.Errorf("gateway: claim: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Hub.TokenFile), 0o700); err != nil {
		return fmt.Errorf("gateway: hub.token_file: %w", err)
	}
	if err := (&FileTokens{path: cfg.Hub.TokenFile}).Store(resp.Token); err != nil { // atomic, directory synced
		return err
	}
	log.Info("gateway: registered by claim; device token saved", "device", resp.Device, "token_file", cfg.Hub.TokenFile,
		"expires", time.Unix(resp.Expires, 0))
	// The device token now wins over the claim token, which is spent either
	// way; a read-only /etc (ProtectSystem=strict) keeps the file.
	if err := os.Remove(cfg.Hub.ClaimTokenFile); err != nil {
		log.Info("gateway: claim token file kept (it is not used while the device token exists)", "err", err)
	}
	return nil
}

// DeriveDeviceID returns a device id for a gateway whose configuration names
// none: "pi-<serial>" from the Raspberry Pi's serial number in
// root/proc/cpuinfo, else "gw-<first 16 hex digits of sha256(machine-id)>"
// from root/etc/machine-id. Both are stable across restarts; the serial
// also survives reflashing the card.
func DeriveDeviceID(root string) (string, error) {
	if f, err := os.Open(filepath.Join(root, "proc/cpuinfo")); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok || strings.TrimSpace(k) != "Serial" {
				continue
			}
			v = strings.ToLower(strings.TrimSpace(v))
			if v != "" && strings.Trim(v, "0") != "" && protocol.ValidateDeviceID("pi-"+v) == nil {
				return "pi-" + v, nil
			}
		}
	}
	b, err := os.ReadFile(filepath.Join(root, "etc/machine-id"))
	if err != nil {
		return "", fmt.Errorf("no Raspberry Pi serial in /proc/cpuinfo and no /etc/machine-id: set device_id: %w", err)
	}
	m := strings.TrimSpace(string(b))
	if m == "" {
		return "", errors.New("/etc/machine-id is empty: set device_id")
	}
	h := sha256.Sum256([]byte(m))
	return "gw-" + hex.EncodeToString(h[:8]), nil
}
