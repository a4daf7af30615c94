package certs

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// MaxDeviceIDLen is the longest device id ValidDeviceID accepts.
const MaxDeviceIDLen = 64

// ValidDeviceID reports whether id can name a device certificate: 1 to 64
// characters from [A-Za-z0-9._-], not starting with '.' or '-'. Such an id is
// safe as a file name and as a certificate CN.
func ValidDeviceID(id string) error {
	if id == "" || len(id) > MaxDeviceIDLen {
		return fmt.Errorf("certs: %w %q: must be 1 to %d characters", ErrInvalidID, id, MaxDeviceIDLen)
	}
	if id[0] == '.' || id[0] == '-' {
		return fmt.Errorf("certs: %w %q: must not start with %q", ErrInvalidID, id, id[0])
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("certs: %w %q: character %q at offset %d is not one of [A-Za-z0-9._-]", ErrInvalidID, id, c, i)
		}
	}
	return nil
}

// defaultHosts are always in the server certificate.
var defaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// serverNames splits defaultHosts plus hosts into DNS and IP SANs, validated,
// normalised and without duplicates.
func serverNames(hosts []string) (dns []string, ips []net.IP, err error) {
	seen := map[string]bool{}
	for _, h := range append(append([]string(nil), defaultHosts...), hosts...) {
		name, ip, err := parseHost(h)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case ip.IsValid():
			if !seen[ip.String()] {
				seen[ip.String()] = true
				ips = append(ips, net.IP(ip.AsSlice()))
			}
		case !seen[name]:
			seen[name] = true
			dns = append(dns, name)
		}
	}
	return dns, ips, nil
}

// parseHost accepts an IP literal (returned as ip) or a DNS name, optionally
// with a wildcard first label (returned lower-cased, without a trailing dot).
func parseHost(h string) (name string, ip netip.Addr, err error) {
	bad := func(why string) error {
		return fmt.Errorf("certs: %w %q: %s", ErrInvalidHost, h, why)
	}
	s := strings.TrimSpace(h)
	switch {
	case s == "":
		return "", ip, bad("empty")
	case strings.Contains(s, "://") || strings.Contains(s, "/"):
		return "", ip, bad("give a host name or IP address, not a URL")
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		if a.Zone() != "" {
			return "", ip, bad("an IP address with a zone cannot be in a certificate")
		}
		return "", a.Unmap(), nil
	}
	if _, _, err := net.SplitHostPort(s); err == nil {
		return "", ip, bad("remove the port")
	}
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	if len(s) > 253 {
		return "", ip, bad("longer than 253 characters")
	}
	for i, label := range strings.Split(s, ".") {
		if label == "*" && i == 0 && strings.Contains(s, ".") {
			continue
		}
		if label == "" || len(label) > 63 {
			return "", ip, bad("every dot-separated label must be 1 to 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", ip, bad("a label must not start or end with '-'")
		}
		for j := 0; j < len(label); j++ {
			c := label[j]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", ip, bad(fmt.Sprintf("character %q is not allowed in a host name (a wildcard may only be the whole first label)", c))
			}
		}
	}
	return s, ip, nil
}
