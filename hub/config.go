package hub

import (
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/outpost-iot/outpost/firmware-ota/manifest"
	"github.com/outpost-iot/outpost/hub/token"
	"github.com/outpost-iot/outpost/internal/config"
	"github.com/outpost-iot/outpost/internal/logx"
)

// Config is the hub's configuration: defaults → YAML file → environment →
// flags, then Validate.
type Config struct {
	DataDir string     `yaml:"data_dir"`
	MQTT    MQTTConfig `yaml:"mqtt"`
	TLS     TLSConfig  `yaml:"tls"`
	HTTP    HTTPConfig `yaml:"http"`

	Presence PresenceConfig `yaml:"presence"`
	Store    StoreConfig    `yaml:"store"`
	Tokens   TokensConfig   `yaml:"tokens"`
	Claims   ClaimsConfig   `yaml:"claims"`
	OTA      OTAConfig      `yaml:"ota"`
	Log      LogConfig      `yaml:"log"`

	AdminToken string `yaml:"-"` // OUTPOST_ADMIN_TOKEN; else data_dir/admin.token
}

// MQTTConfig configures the broker's listeners.
type MQTTConfig struct {
	Listen           string        `yaml:"listen"`
	PlainListen      string        `yaml:"plain_listen"` // loopback only
	HandshakeTimeout time.Duration `yaml:"handshake_timeout"`
	QueueSlots       int32         `yaml:"queue_slots"`
	ConsumerSlots    int32         `yaml:"consumer_queue_slots"` // clients that may subscribe beyond their own device
	BufferSize       int           `yaml:"buffer_size"`
}

// TLSConfig names an operator's PKI; empty means the hub's own in data_dir/pki.
type TLSConfig struct {
	Cert  string   `yaml:"cert"`
	Key   string   `yaml:"key"`
	CA    string   `yaml:"ca"`
	Hosts []string `yaml:"hosts"` // extra SANs for the generated server certificate
}

// HTTPConfig configures the admin API / dashboard listener.
type HTTPConfig struct {
	Listen  string `yaml:"listen"`
	Plain   bool   `yaml:"plain"` // serve plain HTTP; only on loopback
	MaxBody int64  `yaml:"max_body"`
	// SessionTTL is how long a dashboard login lasts (absolute).
	SessionTTL time.Duration `yaml:"session_ttl"`
}

// PresenceConfig tunes presence.
type PresenceConfig struct {
	StaleAfter int           `yaml:"stale_after"` // missed heartbeat intervals
	FlapWindow time.Duration `yaml:"flap_window"`
	FlapCount  int           `yaml:"flap_count"`
	History    int           `yaml:"history"` // transitions the API returns by default
}

// StoreConfig tunes the SQLite store.
type StoreConfig struct {
	RetainAge  time.Duration `yaml:"retain_age"`
	RetainRows int64         `yaml:"retain_rows"`
	FullSync   bool          `yaml:"full_sync"`
}

// TokensConfig bounds token lifetimes.
type TokensConfig struct {
	DefaultTTL time.Duration `yaml:"default_ttl"`
	MaxTTL     time.Duration `yaml:"max_ttl"`
	RefreshTTL time.Duration `yaml:"refresh_ttl"`
}

// ClaimsConfig configures provisioning by claim (docs/protocol.md, "Claiming").
type ClaimsConfig struct {
	// AutoAccept registers a new device id at its first announcement with a
	// valid claim token (the token is the operator's consent). false: the
	// device waits as pending until an operator accepts it. A device id the
	// hub already knows always waits.
	AutoAccept bool `yaml:"auto_accept"`
	// MaxTTL bounds a claim token's lifetime.
	MaxTTL time.Duration `yaml:"max_ttl"`
	// Retry is how long a pending device waits before it announces again.
	Retry time.Duration `yaml:"retry"`
}

// OTAConfig configures firmware releases and rollouts (hub/ota).
type OTAConfig struct {
	// ReleaseKeys are PEM files of trusted release public keys
	// (outpostctl ota keygen writes release.pub). Uploads are refused
	// until one is configured. Never the hub's own token key.
	ReleaseKeys []string `yaml:"release_keys"`
	// ArtifactDir stores artifacts content-addressed; "" is data_dir/artifacts.
	ArtifactDir string `yaml:"artifact_dir"`
	// PublicURL is the base HTTPS URL devices download artifacts from;
	// "" is https://<http.listen host, else tls.hosts[0], else localhost>:<http port>.
	PublicURL string `yaml:"public_url"`
	// MaxDownloads caps concurrent artifact downloads (more get 503 + Retry-After).
	MaxDownloads int `yaml:"max_downloads"`
	// MaxArtifactSize bounds an uploaded artifact, in bytes.
	MaxArtifactSize int64 `yaml:"max_artifact_size"`
}

// LogConfig selects log level and format.
type LogConfig = logx.Config

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		DataDir:  "outpost-hub-data",
		MQTT:     MQTTConfig{Listen: ":8883", HandshakeTimeout: 10 * time.Second, QueueSlots: 128, ConsumerSlots: 1024, BufferSize: 2048},
		HTTP:     HTTPConfig{Listen: ":8443", MaxBody: 1 << 20, SessionTTL: 12 * time.Hour},
		Presence: PresenceConfig{StaleAfter: 3, FlapWindow: time.Minute, FlapCount: 6, History: 100},
		Store:    StoreConfig{RetainAge: 90 * 24 * time.Hour},
		Tokens:   TokensConfig{DefaultTTL: 30 * 24 * time.Hour, MaxTTL: 366 * 24 * time.Hour, RefreshTTL: 30 * 24 * time.Hour},
		Claims:   ClaimsConfig{AutoAccept: true, MaxTTL: 7 * 24 * time.Hour, Retry: 15 * time.Second},
		Log:      LogConfig{Level: "info", Format: "text"},
		OTA:      OTAConfig{MaxDownloads: 32, MaxArtifactSize: 256 << 20},
	}
}

// ApplyEnv overrides c from the environment.
func (c *Config) ApplyEnv() {
	if v, ok := config.Env("OUTPOST_HUB_DATA_DIR"); ok {
		c.DataDir = v
	}
	if v, ok := config.Env("OUTPOST_HUB_MQTT_LISTEN"); ok {
		c.MQTT.Listen = v
	}
	if v, ok := config.Env("OUTPOST_HUB_HTTP_LISTEN"); ok {
		c.HTTP.Listen = v
	}
	if v, ok := config.Env("OUTPOST_ADMIN_TOKEN"); ok {
		c.AdminToken = v
	}
	if v, ok := config.Env("OUTPOST_HUB_SESSION_TTL"); ok {
		c.HTTP.SessionTTL = -1 // Validate reports a bad value
		if d, err := time.ParseDuration(v); err == nil {
			c.HTTP.SessionTTL = d
		}
	}
}

// Validate reports every problem with its key.
func (c *Config) Validate() error {
	var p config.Problems
	if c.DataDir == "" {
		p.Addf("data_dir", "must be set")
	}
	checkAddr(&p, "mqtt.listen", c.MQTT.Listen, false)
	if c.MQTT.PlainListen != "" {
		checkAddr(&p, "mqtt.plain_listen", c.MQTT.PlainListen, true)
	}
	if c.MQTT.Listen == "" && c.MQTT.PlainListen == "" {
		p.Addf("mqtt.listen", "no MQTT listener configured")
	}
	if c.MQTT.HandshakeTimeout <= 0 {
		p.Addf("mqtt.handshake_timeout", "must be > 0")
	}
	if c.MQTT.QueueSlots < 8 {
		p.Addf("mqtt.queue_slots", "%d must be ≥ 8", c.MQTT.QueueSlots)
	}
	if c.MQTT.ConsumerSlots < 8 {
		p.Addf("mqtt.consumer_queue_slots", "%d must be ≥ 8", c.MQTT.ConsumerSlots)
	}
	if c.MQTT.BufferSize < 512 {
		p.Addf("mqtt.buffer_size", "%d must be ≥ 512", c.MQTT.BufferSize)
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		p.Addf("tls", "cert and key go together (got cert %q, key %q)", c.TLS.Cert, c.TLS.Key)
	}
	checkAddr(&p, "http.listen", c.HTTP.Listen, c.HTTP.Plain)
	if c.HTTP.MaxBody <= 0 {
		p.Addf("http.max_body", "must be > 0")
	}
	if c.HTTP.SessionTTL < time.Second || c.HTTP.SessionTTL > 30*24*time.Hour {
		p.Addf("http.session_ttl", "%v must be between 1s and 720h (env OUTPOST_HUB_SESSION_TTL: a Go duration)", c.HTTP.SessionTTL)
	}
	if c.Presence.StaleAfter < 1 {
		p.Addf("presence.stale_after", "%d must be ≥ 1", c.Presence.StaleAfter)
	}
	if c.Presence.FlapWindow <= 0 {
		p.Addf("presence.flap_window", "must be > 0")
	}
	if c.Presence.FlapCount < 2 {
		p.Addf("presence.flap_count", "%d must be ≥ 2", c.Presence.FlapCount)
	}
	if c.Store.RetainAge < 0 {
		p.Addf("store.retain_age", "must be ≥ 0 (0 keeps forever)")
	}
	if c.Store.RetainRows < 0 {
		p.Addf("store.retain_rows", "must be ≥ 0 (0 = no limit)")
	}
	if c.Tokens.MaxTTL <= 0 {
		p.Addf("tokens.max_ttl", "must be > 0")
	}
	if c.Tokens.DefaultTTL <= 0 || c.Tokens.DefaultTTL > c.Tokens.MaxTTL {
		p.Addf("tokens.default_ttl", "%v must be > 0 and ≤ tokens.max_ttl (%v)", c.Tokens.DefaultTTL, c.Tokens.MaxTTL)
	}
	if c.Tokens.RefreshTTL <= 0 || c.Tokens.RefreshTTL > c.Tokens.MaxTTL {
		p.Addf("tokens.refresh_ttl", "%v must be > 0 and ≤ tokens.max_ttl", c.Tokens.RefreshTTL)
	}
	if c.Claims.MaxTTL < time.Minute || c.Claims.MaxTTL > token.MaxClaimTTL {
		p.Addf("claims.max_ttl", "%v must be within 1m..%v", c.Claims.MaxTTL, token.MaxClaimTTL)
	}
	if c.Claims.Retry < time.Second || c.Claims.Retry > time.Hour {
		p.Addf("claims.retry", "%v must be within 1s..1h", c.Claims.Retry)
	}
	for i, f := range c.OTA.ReleaseKeys {
		if _, err := manifest.LoadKeyring(f); err != nil {
			p.Add(fmt.Sprintf("ota.release_keys[%d]", i), err)
		}
	}
	if c.OTA.MaxDownloads < 1 {
		p.Addf("ota.max_downloads", "%d must be ≥ 1", c.OTA.MaxDownloads)
	}
	if c.OTA.MaxArtifactSize < 1 {
		p.Addf("ota.max_artifact_size", "%d must be ≥ 1 (bytes)", c.OTA.MaxArtifactSize)
	}
	if c.OTA.PublicURL != "" {
		if u, err := url.Parse(c.OTA.PublicURL); err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			p.Addf("ota.public_url", "%q must be an https://host[:port][/path] URL (devices download only over HTTPS)", c.OTA.PublicURL)
		}
	}
	c.Log.Check(&p)
	return p.Err()
}

func checkAddr(p *config.Problems, key, addr string, loopbackOnly bool) {
	if addr == "" {
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		p.Addf(key, "%q is not host:port: %v", addr, err)
		return
	}
	if port == "" {
		p.Addf(key, "%q has no port", addr)
	}
	if loopbackOnly {
		ip := net.ParseIP(host)
		if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			p.Addf(key, "%q: plaintext is allowed only on a loopback address (127.0.0.1, ::1, localhost)", addr)
		}
	}
}
