package protocol

import (
	"encoding/json"
	"net/url"
)

// OTA update states a gateway reports on Root/d/{id}/ota/status.
const (
	OTANotified    = "notified"
	OTADownloading = "downloading"
	OTAVerifying   = "verifying"
	OTAInstalling  = "installing"
	OTARestarting  = "restarting"
	OTASucceeded   = "succeeded"
	OTAFailed      = "failed"
	OTARolledBack  = "rolled_back"
)

// OTAStates lists every state, in lifecycle order.
var OTAStates = []string{OTANotified, OTADownloading, OTAVerifying, OTAInstalling, OTARestarting, OTASucceeded, OTAFailed, OTARolledBack}

// OTANotice is the retained payload of Root/d/{id}/in/ota: the hub asks the
// device to install a release. An empty retained payload withdraws it.
// Manifest is the signed manifest envelope (firmware-ota/manifest) verbatim:
// the gateway trusts it only if it verifies with its release key.
type OTANotice struct {
	V              int             `json:"v"`
	Rollout        string          `json:"rollout"`
	Release        string          `json:"release"` // semver, the manifest's version
	Manifest       json.RawMessage `json:"manifest"`
	URL            string          `json:"url"` // HTTPS URL of the artifact on the hub (Range supported)
	AllowDowngrade bool            `json:"allow_downgrade,omitempty"`
	Time           int64           `json:"t"`
}

// OTAStatus is the payload of Root/d/{id}/ota/status (QoS 1).
type OTAStatus struct {
	V        int    `json:"v"`
	Rollout  string `json:"rollout"`
	Release  string `json:"release"`
	State    string `json:"state"`
	Bytes    int64  `json:"bytes,omitempty"` // downloaded so far
	Total    int64  `json:"total,omitempty"`
	Reason   string `json:"reason,omitempty"` // for failed and rolled_back
	Firmware string `json:"fw,omitempty"`     // the version running now
	Time     int64  `json:"t"`
}

// OTARelease is the retained announcement on TopicFleetOTA.
type OTARelease struct {
	V       int    `json:"v"`
	Release string `json:"release"`
	Target  string `json:"target"` // e.g. linux/arm/armv6
	SHA256  string `json:"sha256"`
	Time    int64  `json:"t"`
}

// DecodeOTANotice decodes and validates a notice.
func DecodeOTANotice(b []byte) (OTANotice, error) {
	var n OTANotice
	if err := decode(b, &n, "ota notice"); err != nil {
		return OTANotice{}, err
	}
	if err := checkVersion(n.V, "ota notice"); err != nil {
		return OTANotice{}, err
	}
	if n.Rollout == "" || len(n.Rollout) > 64 {
		return OTANotice{}, invalid("ota notice: rollout id must be 1–64 bytes")
	}
	if n.Release == "" || len(n.Release) > 128 {
		return OTANotice{}, invalid("ota notice: release must be 1–128 bytes")
	}
	if len(n.Manifest) == 0 || len(n.Manifest) > 64<<10 {
		return OTANotice{}, invalid("ota notice: manifest missing or over 64 KiB")
	}
	u, err := url.Parse(n.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return OTANotice{}, invalid("ota notice: url %q is not an https URL", n.URL)
	}
	return n, nil
}

// DecodeOTAStatus decodes and validates a status report.
func DecodeOTAStatus(b []byte) (OTAStatus, error) {
	var s OTAStatus
	if err := decode(b, &s, "ota status"); err != nil {
		return OTAStatus{}, err
	}
	if err := checkVersion(s.V, "ota status"); err != nil {
		return OTAStatus{}, err
	}
	known := false
	for _, st := range OTAStates {
		known = known || st == s.State
	}
	if !known {
		return OTAStatus{}, invalid("ota status: state %q unknown", s.State)
	}
	if s.Rollout == "" || len(s.Rollout) > 64 || len(s.Release) > 128 {
		return OTAStatus{}, invalid("ota status: rollout must be 1–64 bytes, release at most 128")
	}
	if s.Bytes < 0 || s.Total < 0 {
		return OTAStatus{}, invalid("ota status: negative bytes or total")
	}
	if err := checkText("ota status.reason", s.Reason, MaxTextLen); err != nil {
		return OTAStatus{}, err
	}
	return s, checkText("ota status.fw", s.Firmware, 128)
}
