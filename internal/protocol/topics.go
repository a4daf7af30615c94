package protocol

import (
	"fmt"
	"strings"
)

// Root is the first level of every Outpost topic; the version is part of it so
// that a future incompatible tree can live beside this one.
const Root = "outpost/v1"

// Device-scoped topic suffixes (after Root/d/{id}/).
const (
	SufLog       = "log"        // gateway → hub: batch of log records, QoS 1
	SufStatus    = "status"     // gateway → hub: birth / last-will, retained, QoS 1
	SufHeartbeat = "hb"         // gateway → hub: heartbeat, QoS 0
	SufTokenReq  = "token/req"  // gateway → hub: token refresh request (v5 request/response)
	SufOTAStatus = "ota/status" // gateway → hub: update progress
	SufIn        = "in"         // hub → gateway: everything below in/
	SufInToken   = "in/token"   // hub → gateway: token refresh response
	SufInOTA     = "in/ota"     // hub → gateway: retained OTA notice
)

// Fleet topics.
const (
	TopicFleetPresence = Root + "/fleet/presence" // hub → subscribers: presence transitions
	TopicFleetOTA      = Root + "/fleet/ota"      // hub → fleet: release announcements (retained)
)

// DeviceTopic returns Root/d/{id}/{suffix}.
func DeviceTopic(id, suffix string) string {
	return Root + "/d/" + id + "/" + suffix
}

// ParseDeviceTopic splits Root/d/{id}/{suffix...}. ok is false for any other topic.
func ParseDeviceTopic(topic string) (id, suffix string, ok bool) {
	rest, found := strings.CutPrefix(topic, Root+"/d/")
	if !found {
		return "", "", false
	}
	id, suffix, found = strings.Cut(rest, "/")
	if !found || id == "" || suffix == "" {
		return "", "", false
	}
	return id, suffix, true
}

// GatewayGrants returns the publish and subscribe filters that a gateway with
// the given device id holds (token profile "gateway").
func GatewayGrants(id string) (pub, sub []string) {
	pub = []string{
		DeviceTopic(id, SufLog),
		DeviceTopic(id, SufStatus),
		DeviceTopic(id, SufHeartbeat),
		DeviceTopic(id, SufTokenReq),
		DeviceTopic(id, SufOTAStatus),
	}
	sub = []string{
		DeviceTopic(id, SufIn) + "/#",
		TopicFleetOTA,
	}
	return pub, sub
}

// MaxIDLen bounds device ids (they appear in topics, file names and URLs).
const MaxIDLen = 64

// ValidateDeviceID reports whether id is usable as a device id and MQTT client
// id: 1–64 characters of [A-Za-z0-9._-], not starting with '.' or '-'.
func ValidateDeviceID(id string) error {
	if id == "" {
		return fmt.Errorf("device id is empty")
	}
	if len(id) > MaxIDLen {
		return fmt.Errorf("device id %.20q… is %d bytes, at most %d", id, len(id), MaxIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		case (c == '.' || c == '-') && i > 0:
		default:
			return fmt.Errorf("device id %q: character %q at %d not allowed (use A-Z a-z 0-9 . _ -)", id, c, i)
		}
	}
	return nil
}

// ValidateFilter checks an MQTT topic filter: non-empty, at most 65535 bytes,
// '#' only as the whole last level, '+' only as a whole level, no NUL.
func ValidateFilter(f string) error {
	if f == "" {
		return fmt.Errorf("topic filter is empty")
	}
	if len(f) > 65535 {
		return fmt.Errorf("topic filter is %d bytes, at most 65535", len(f))
	}
	if strings.IndexByte(f, 0) >= 0 {
		return fmt.Errorf("topic filter %q contains NUL", f)
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("topic filter %q: '#' must be a whole last level", f)
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("topic filter %q: '+' must be a whole level", f)
		}
	}
	return nil
}

// ValidateTopic checks a topic name for PUBLISH: a valid filter without wildcards.
func ValidateTopic(t string) error {
	if err := ValidateFilter(t); err != nil {
		return err
	}
	if strings.ContainsAny(t, "+#") {
		return fmt.Errorf("topic %q contains a wildcard", t)
	}
	return nil
}

// Match reports whether topic matches filter with MQTT semantics: '+' matches
// one level, '#' the parent and any number of levels below it, and wildcards
// at the first level never match topics starting with '$'.
func Match(filter, topic string) bool {
	if len(topic) > 0 && topic[0] == '$' && len(filter) > 0 && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		if filter == "#" {
			return true
		}
		fl, frest, fmore := strings.Cut(filter, "/")
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore {
			return !tmore
		}
		if !tmore {
			// "a/#" matches "a": the remaining filter must be exactly "#".
			return frest == "#"
		}
		filter, topic = frest, trest
	}
}

// MatchAny reports whether any filter matches topic.
func MatchAny(filters []string, topic string) bool {
	for _, f := range filters {
		if Match(f, topic) {
			return true
		}
	}
	return false
}

// Covers reports whether every topic matched by sub is also matched by
// granted, i.e. a client granted `granted` may subscribe to `sub`.
func Covers(granted, sub string) bool {
	for {
		if granted == "#" {
			return true
		}
		gl, grest, gmore := strings.Cut(granted, "/")
		sl, srest, smore := strings.Cut(sub, "/")
		switch {
		case sl == "#":
			return false // sub is wider than any non-# grant level
		case gl == "+":
			// any single level in sub (including '+') is covered
		case gl != sl:
			return false
		}
		if !gmore {
			return !smore
		}
		if !smore {
			return grest == "#"
		}
		granted, sub = grest, srest
	}
}

// CoversAny reports whether any granted filter covers sub.
func CoversAny(granted []string, sub string) bool {
	for _, g := range granted {
		if Covers(g, sub) {
			return true
		}
	}
	return false
}
