package gateway

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/outpost-iot/outpost/firmware-ota/manifest"
	"github.com/outpost-iot/outpost/firmware-ota/updater"
	"github.com/outpost-iot/outpost/internal/buildinfo"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// ErrRestart is returned by Run when an update (or a rollback) put another
// binary in place: the process must exit with updater.ExitRestart so that
// its supervisor starts the binary now in place.
var ErrRestart = updater.ErrRestart

// openOTA opens the update state machine. It runs early in New, so that a
// new version on trial is counted before anything else can fail.
func (g *Gateway) openOTA(tlsCfg *tls.Config) error {
	keys, err := releaseKeys(g.cfg.ReleasePubKey, buildinfo.ReleasePubKey)
	if err != nil {
		return err
	}
	bin, err := Binary(g.cfg)
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg.Clone()
	tr.ResponseHeaderTimeout = 30 * time.Second
	client := &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != "https" || len(via) >= 5 {
			return fmt.Errorf("gateway: ota: refusing redirect to %s", req.URL.Redacted())
		}
		return nil
	}}
	g.ota, err = updater.New(updater.Config{
		StateDir:      OTAStateDir(g.cfg),
		Keys:          keys,
		Version:       g.version,
		Host:          manifest.HostTarget(boardModel()),
		Installer:     updater.FileInstaller{Path: bin},
		Reporter:      updater.ReporterFunc(g.publishOTAStatus),
		HTTPClient:    client,
		Token:         g.tokens.Token,
		HealthTimeout: g.cfg.OTA.HealthTimeout,
		NeverHealthy:  buildinfo.TestFault == "unhealthy",
		Logger:        g.log,
	})
	if err != nil {
		return fmt.Errorf("gateway: ota: %w", err)
	}
	return nil
}

// OTAStateDir is where the updater keeps its state file and downloads.
func OTAStateDir(cfg Config) string { return filepath.Join(cfg.DataDir, "ota") }

// Binary is the executable updates replace and the supervisor runs:
// ota.binary, or the running executable, with symlinks resolved.
func Binary(cfg Config) (string, error) {
	bin := cfg.OTA.Binary
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return "", fmt.Errorf("gateway: own executable: %w", err)
		}
	}
	if resolved, err := filepath.EvalSymlinks(bin); err == nil {
		bin = resolved
	}
	return filepath.Abs(bin)
}

func (g *Gateway) publishOTAStatus(ctx context.Context, st protocol.OTAStatus) error {
	return g.up.PublishStatus(ctx, st)
}

// onMessage routes messages from the hub (other than token responses).
func (g *Gateway) onMessage(topic string, payload []byte, _ bool) {
	switch topic {
	case protocol.DeviceTopic(g.cfg.DeviceID, protocol.SufInOTA):
		g.ota.Notice(payload)
	case protocol.TopicFleetOTA:
		// Release announcements are informational; a device acts only on
		// the notice on its own topic.
	default:
		g.log.Debug("gateway: message from the hub ignored", "topic", topic)
	}
}

// releaseKeys returns the trusted release keys: those in file (PEM) and
// those compiled in (see buildinfo.ReleasePubKey). None is not an error:
// updates are then refused.
func releaseKeys(file, compiled string) (*manifest.Keyring, error) {
	var pubs []ed25519.PublicKey
	if file != "" {
		k, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("gateway: release_pubkey: %w", err)
		}
		ks, err := manifest.ParsePublicKeys(k)
		if err != nil {
			return nil, fmt.Errorf("gateway: release_pubkey %s: %w", file, err)
		}
		pubs = append(pubs, ks...)
	}
	ks, err := parseCompiledKeys(compiled)
	if err != nil {
		return nil, fmt.Errorf("gateway: compiled-in release key: %w", err)
	}
	return manifest.NewKeyring(append(pubs, ks...)...)
}

// parseCompiledKeys parses comma-separated standard base64 keys, each the
// raw 32-byte Ed25519 key or its PKIX DER form.
func parseCompiledKeys(s string) ([]ed25519.PublicKey, error) {
	var out []ed25519.PublicKey
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
		b, err := base64.StdEncoding.DecodeString(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not standard base64: %w", f, err)
		}
		if len(b) == ed25519.PublicKeySize {
			out = append(out, ed25519.PublicKey(b))
			continue
		}
		k, err := x509.ParsePKIXPublicKey(b)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a raw Ed25519 key nor a PKIX public key: %w", f, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%q is a %T key, want Ed25519", f, k)
		}
		out = append(out, pub)
	}
	return out, nil
}

// boardModel is the board model from the device tree ("" where there is none).
func boardModel() string {
	b, err := os.ReadFile("/proc/device-tree/model")
	if err != nil {
		return ""
	}
	return string(b)
}
