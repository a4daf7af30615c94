package gateway

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/outpost-iot/outpost/drivers/catalog"
	"github.com/outpost-iot/outpost/gateway/rules"
	"github.com/outpost-iot/outpost/internal/config"
	"github.com/outpost-iot/outpost/internal/logx"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// Config is the gateway's configuration: defaults → YAML → environment →
// flags, then Validate.
type Config struct {
	DeviceID string         `yaml:"device_id"`
	DataDir  string         `yaml:"data_dir"`
	Hub      HubConfig      `yaml:"hub"`
	Outbox   OutboxConfig   `yaml:"outbox"`
	Clock    ClockConfig    `yaml:"clock"`
	Sensors  []catalog.Spec `yaml:"sensors"`
	Rules    rules.Config   `yaml:"rules"`
	Actions  []Action       `yaml:"actions"`
	Log      LogConfig      `yaml:"log"`
	// ReleasePubKey names the file with the release public key(s) for OTA
	// (PEM, as outpostctl ota keygen writes release.pub). Keys compiled in
	// (buildinfo.ReleasePubKey) are trusted as well.
	ReleasePubKey string    `yaml:"release_pubkey"`
	OTA           OTAConfig `yaml:"ota"`
}

// OTAConfig configures over-the-air updates (firmware-ota/updater).
type OTAConfig struct {
	// HealthTimeout is how long a new version has to connect and get its
	// succeeded status acknowledged by the hub before it is rolled back.
	HealthTimeout time.Duration `yaml:"health_timeout"`
	// Binary is the executable an update replaces; default: the running
	// one (os.Executable, symlinks resolved). The supervisor runs this path.
	Binary string `yaml:"binary"`
}

// HubConfig says how to reach the hub.
type HubConfig struct {
	Address   string `yaml:"address"` // host:port of the hub's TLS MQTT listener
	CA        string `yaml:"ca"`      // the hub's CA certificate (pinned)
	TokenFile string `yaml:"token_file"`
	// ClaimTokenFile holds a one-time claim token: while token_file is
	// missing or empty, the gateway registers by claim first and writes the
	// device token it receives to token_file.
	ClaimTokenFile string        `yaml:"claim_token_file"`
	ClaimRetry     time.Duration `yaml:"claim_retry"` // first pause between announcements while pending; 0: 10s
	KeepAlive      time.Duration `yaml:"keepalive"`
	Heartbeat      time.Duration `yaml:"heartbeat"`
	BatchSize      int           `yaml:"batch_size"`
	BacklogRate    int           `yaml:"backlog_rate"` // records/s drained after an outage; < 0 unlimited
}

// OutboxConfig bounds the durable outbox.
type OutboxConfig struct {
	MaxRecords    int           `yaml:"max_records"`
	MaxBytes      int64         `yaml:"max_bytes"`
	MaxAge        time.Duration `yaml:"max_age"`
	FlushInterval time.Duration `yaml:"flush_interval"`
}

// ClockConfig says when the system clock may be trusted.
type ClockConfig struct {
	// Source: "ntp" trusts the clock only once the kernel reports it
	// synchronised (a Raspberry Pi has no RTC: until then records carry
	// boot-relative time); "system" always trusts it (boards with an RTC,
	// development, the demo).
	Source string `yaml:"source"`
}

// Action drives a GPIO output while an alert is active.
type Action struct {
	Rule      string `yaml:"rule"`       // alert rule name ("" = any)
	Sensor    string `yaml:"sensor"`     // sensor name ("" = any)
	GPIO      string `yaml:"gpio"`       // periph pin name, e.g. GPIO17
	ActiveLow bool   `yaml:"active_low"` // drive low while active
}

// LogConfig selects log level and format.
type LogConfig = logx.Config

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		DataDir: "/var/lib/outpost-gateway",
		Hub:     HubConfig{ClaimRetry: 10 * time.Second, KeepAlive: 30 * time.Second, Heartbeat: 15 * time.Second, BatchSize: 100, BacklogRate: 2000},
		Outbox:  OutboxConfig{MaxRecords: 1_000_000, MaxBytes: 64 << 20, MaxAge: 30 * 24 * time.Hour, FlushInterval: time.Second},
		Clock:   ClockConfig{Source: "ntp"},
		Log:     LogConfig{Level: "info", Format: "text"},
		OTA:     OTAConfig{HealthTimeout: 2 * time.Minute},
	}
}

// ApplyEnv overrides from the environment.
func (c *Config) ApplyEnv() {
	if v, ok := config.Env("OUTPOST_GATEWAY_DEVICE_ID"); ok {
		c.DeviceID = v
	}
	if v, ok := config.Env("OUTPOST_GATEWAY_HUB"); ok {
		c.Hub.Address = v
	}
	if v, ok := config.Env("OUTPOST_GATEWAY_DATA_DIR"); ok {
		c.DataDir = v
	}
	if v, ok := config.Env("OUTPOST_GATEWAY_RELEASE_PUBKEY"); ok {
		c.ReleasePubKey = v
	}
}

// Validate reports every problem with its key.
func (c *Config) Validate() error {
	var p config.Problems
	if err := protocol.ValidateDeviceID(c.DeviceID); err != nil {
		p.Add("device_id", fmt.Errorf("%w (unset, it is derived from the Pi's serial or /etc/machine-id where they exist)", err))
	}
	if c.DataDir == "" {
		p.Addf("data_dir", "must be set")
	}
	if c.Hub.Address == "" {
		p.Addf("hub.address", "must be set (host:port of the hub's MQTT TLS listener)")
	} else if _, port, err := net.SplitHostPort(c.Hub.Address); err != nil || port == "" {
		p.Addf("hub.address", "%q is not host:port", c.Hub.Address)
	}
	if c.Hub.CA == "" {
		p.Addf("hub.ca", "must name the hub's CA certificate")
	}
	if c.Hub.TokenFile == "" {
		p.Addf("hub.token_file", "must name the file holding the device token (written by the claim when hub.claim_token_file is set)")
	}
	if c.Hub.ClaimRetry != 0 && (c.Hub.ClaimRetry < time.Second || c.Hub.ClaimRetry > 10*time.Minute) {
		p.Addf("hub.claim_retry", "%v must be within 1s..10m (0: 10s)", c.Hub.ClaimRetry)
	}
	if c.Hub.KeepAlive < 5*time.Second || c.Hub.KeepAlive > 18*time.Hour {
		p.Addf("hub.keepalive", "%v must be within 5s..18h", c.Hub.KeepAlive)
	}
	if c.Hub.Heartbeat < time.Second {
		p.Addf("hub.heartbeat", "%v must be ≥ 1s", c.Hub.Heartbeat)
	}
	if c.Hub.BatchSize < 1 || c.Hub.BatchSize > protocol.MaxBatch {
		p.Addf("hub.batch_size", "%d must be within 1..%d", c.Hub.BatchSize, protocol.MaxBatch)
	}
	if c.Outbox.FlushInterval <= 0 || c.Outbox.FlushInterval > time.Minute {
		p.Addf("outbox.flush_interval", "%v must be within (0, 1m]", c.Outbox.FlushInterval)
	}
	if c.Outbox.MaxRecords == 0 {
		p.Addf("outbox.max_records", "must be > 0 (or < 0 for no limit)")
	}
	switch c.Clock.Source {
	case "ntp", "system":
	default:
		p.Addf("clock.source", "%q (want ntp or system)", c.Clock.Source)
	}
	if len(c.Sensors) == 0 {
		p.Addf("sensors", "no sensors configured")
	} else if err := catalog.Validate(c.Sensors); err != nil {
		var ps catalog.Problems
		if errors.As(err, &ps) {
			for _, x := range ps {
				p.Addf(x.Key, "%s", x.Msg)
			}
		} else {
			p.Add("sensors", err)
		}
	}
	if err := c.Rules.Validate(); err != nil {
		var ce *rules.ConfigError
		if errors.As(err, &ce) {
			for _, x := range ce.Problems {
				p.Addf("rules."+x.Path, "%s", x.Msg)
			}
		} else {
			p.Add("rules", err)
		}
	}
	for i, a := range c.Actions {
		if a.GPIO == "" {
			p.Addf(fmt.Sprintf("actions[%d].gpio", i), "must name a pin, e.g. GPIO17")
		}
		if a.Rule != "" && !hasRule(c.Rules, a.Rule) {
			p.Addf(fmt.Sprintf("actions[%d].rule", i), "no rule named %q", a.Rule)
		}
	}
	if c.OTA.HealthTimeout < time.Second || c.OTA.HealthTimeout > time.Hour {
		p.Addf("ota.health_timeout", "%v must be within 1s..1h", c.OTA.HealthTimeout)
	}
	c.Log.Check(&p)
	return p.Err()
}

func hasRule(c rules.Config, name string) bool {
	for _, r := range c.Rules {
		if r.Name == name {
			return true
		}
	}
	return false
}
