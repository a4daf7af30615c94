// Package config holds what every Outpost binary does with configuration:
// strict YAML decoding (unknown keys are errors, with line numbers) and a
// problem list that reports every invalid key at once.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// LoadYAML decodes the YAML file at path into v strictly. A missing path ("")
// leaves v unchanged.
func LoadYAML(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return DecodeYAML(b, v, path)
}

// DecodeYAML decodes b into v strictly; name prefixes errors.
func DecodeYAML(b []byte, v any, name string) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config: %s: %w", name, err)
	}
	return nil
}

// Problems collects validation problems, each with its key.
type Problems []string

// Addf records a problem for key.
func (p *Problems) Addf(key, format string, args ...any) {
	*p = append(*p, key+": "+fmt.Sprintf(format, args...))
}

// Add records err (possibly joined errors) for key.
func (p *Problems) Add(key string, err error) {
	if err == nil {
		return
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		*p = append(*p, key+": "+line)
	}
}

// Err returns nil or an error listing every problem, one per line.
func (p Problems) Err() error {
	if len(p) == 0 {
		return nil
	}
	return &InvalidError{Problems: p}
}

// InvalidError is a configuration with problems.
type InvalidError struct{ Problems []string }

func (e *InvalidError) Error() string {
	return fmt.Sprintf("invalid configuration (%d problems):\n  %s", len(e.Problems), strings.Join(e.Problems, "\n  "))
}

// Env returns the value of the environment variable name and whether it is set and non-empty.
func Env(name string) (string, bool) {
	v := os.Getenv(name)
	return v, v != ""
}
