// Package logx builds the slog logger every binary uses from its level and format.
package logx

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/outpost-iot/outpost/internal/config"
)

// New returns a logger writing to w; level is debug|info|warn|error, format text|json.
func New(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q (want text or json)", format)
}

// Config is the `log:` section of the hub's and the gateway's configuration.
type Config struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// Check adds c's problems to p under log.level and log.format.
func (c Config) Check(p *config.Problems) {
	switch c.Level {
	case "debug", "info", "warn", "error":
	default:
		p.Addf("log.level", "%q (want debug, info, warn or error)", c.Level)
	}
	switch c.Format {
	case "text", "json":
	default:
		p.Addf("log.format", "%q (want text or json)", c.Format)
	}
}
