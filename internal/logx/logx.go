// Package logx builds the slog logger every binary uses from its level and format.
package logx

import (
	"fmt"
	"io"
	"log/slog"
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
