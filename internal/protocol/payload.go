package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
)

// Version is the payload schema version carried as "v" in every payload.
const Version = 1

// Limits that bound what a peer can make us allocate.
const (
	MaxPayload       = 256 << 10 // bytes in one PUBLISH payload we accept
	MaxBatch         = 500       // records in one log batch
	MaxSensorNameLen = 64
	MaxTextLen       = 1024 // free-text fields (messages, causes)
)

// ErrInvalid is wrapped by every validation error in this package, so callers
// can map it to one MQTT reason code / HTTP status.
var ErrInvalid = errors.New("invalid payload")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Record kinds in a device's log.
const (
	KindReading = "reading"
	KindAlert   = "alert"
	KindFault   = "fault"
)

// Clock states of a record's time.
const (
	ClockSynced = ""     // Time is wall-clock time from a synchronised clock
	ClockMono   = "mono" // the clock was not synchronised: Time is boot-relative (Boot + Mono)
)

// Record is one entry in a device's append-only log: a reading, an alert
// transition or a sensor fault. Seq is the device's monotonically increasing
// sequence number (≥ 1); the hub stores (device, seq) at most once.
type Record struct {
	Seq    uint64 `json:"seq"`
	Kind   string `json:"kind"`
	Time   int64  `json:"t"`               // event time, unix ms (when Clock == ClockSynced)
	Clock  string `json:"clock,omitempty"` // "" (synced) or "mono"
	Boot   string `json:"boot,omitempty"`  // boot id, with Clock == "mono"
	MonoMS int64  `json:"mono,omitempty"`  // ms since boot, with Clock == "mono"
	Sensor string `json:"sensor"`

	// reading
	Value *float64 `json:"value,omitempty"`
	Unit  string   `json:"unit,omitempty"`

	// alert and fault
	Alert *Alert `json:"alert,omitempty"`
	Fault *Fault `json:"fault,omitempty"`
}

// Alert states.
const (
	AlertRaised  = "raised"
	AlertCleared = "cleared"
)

// Alert is an alert transition raised or cleared by a gateway rule.
type Alert struct {
	Rule     string            `json:"rule"`
	State    string            `json:"state"` // raised | cleared
	Severity string            `json:"severity,omitempty"`
	Value    float64           `json:"value"`             // the value the rule judged (aggregate or reading)
	Window   string            `json:"window,omitempty"`  // human description, e.g. "avg 1m"
	Since    int64             `json:"since,omitempty"`   // unix ms the condition began
	Message  string            `json:"message,omitempty"` // rendered text
	Labels   map[string]string `json:"labels,omitempty"`  // rule labels
}

// Fault is a sensor fault: something went wrong reading a sensor; it is not a reading.
type Fault struct {
	Cause  string    `json:"cause"`            // machine-readable: crc, power_on_value, missing, out_of_range, device_error, timeout, io; outbox: dropped
	Detail string    `json:"detail,omitempty"` // human text
	Seqs   *SeqRange `json:"seqs,omitempty"`   // outbox faults: the seqs concerned
}

// SeqRange is an inclusive range of a device's seqs.
type SeqRange struct {
	First uint64 `json:"first"`
	Last  uint64 `json:"last"`
}

// Batch is the payload of Root/d/{id}/log.
type Batch struct {
	V       int      `json:"v"`
	Records []Record `json:"records"`
}

// Status is the retained payload of Root/d/{id}/status: the birth message
// (online) and the last-will (offline).
type Status struct {
	V          int    `json:"v"`
	State      string `json:"state"` // online | offline
	Epoch      uint64 `json:"epoch"` // connection epoch (bdSeq): the will carries the same epoch as its birth
	Firmware   string `json:"fw,omitempty"`
	HeartbeatS int    `json:"hb_s,omitempty"` // announced heartbeat interval in seconds; 0 = none
	Boot       string `json:"boot,omitempty"`
	Time       int64  `json:"t,omitempty"`
}

// Heartbeat is the payload of Root/d/{id}/hb.
type Heartbeat struct {
	V        int               `json:"v"`
	Time     int64             `json:"t,omitempty"`
	UptimeS  int64             `json:"uptime_s"`
	Firmware string            `json:"fw,omitempty"`
	Outbox   int64             `json:"outbox"`
	Sensors  map[string]string `json:"sensors,omitempty"` // name → "ok" or a fault cause
	CPUTempC *float64          `json:"cpu_temp_c,omitempty"`
}

// TokenRequest is the payload of Root/d/{id}/token/req; the response goes to
// the request's v5 ResponseTopic with its CorrelationData.
type TokenRequest struct {
	V   int    `json:"v"`
	TTL string `json:"ttl,omitempty"` // requested lifetime, e.g. "24h"; the hub caps it
}

// TokenResponse answers a TokenRequest.
type TokenResponse struct {
	V       int    `json:"v"`
	Token   string `json:"token,omitempty"`
	Expires int64  `json:"exp,omitempty"` // unix seconds
	Error   string `json:"error,omitempty"`
}

// PresenceEvent is published on TopicFleetPresence and the SSE stream.
type PresenceEvent struct {
	V        int    `json:"v"`
	Device   string `json:"device"`
	State    string `json:"state"` // online | stale | offline
	Reason   string `json:"reason"`
	Time     int64  `json:"t"` // unix ms
	Epoch    uint64 `json:"epoch,omitempty"`
	Flapping bool   `json:"flapping,omitempty"`
}

// decode is strict: unknown fields, trailing data and oversize payloads are errors.
func decode(b []byte, v any, what string) error {
	if len(b) > MaxPayload {
		return invalid("%s: payload is %d bytes, at most %d", what, len(b), MaxPayload)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalid("%s: %v", what, err)
	}
	if dec.More() {
		return invalid("%s: trailing data after JSON value", what)
	}
	return nil
}

func checkVersion(v int, what string) error {
	if v != Version {
		return invalid("%s: unsupported schema version v=%d (want %d)", what, v, Version)
	}
	return nil
}

func checkText(field, s string, max int) error {
	if len(s) > max {
		return invalid("%s is %d bytes, at most %d", field, len(s), max)
	}
	return nil
}

// DecodeBatch decodes and validates a log batch.
func DecodeBatch(b []byte) (Batch, error) {
	if len(b) <= MaxPayload {
		if bt, ok := decodeBatchFast(b); ok {
			return bt, bt.Validate()
		}
	}
	var bt Batch
	if err := decode(b, &bt, "log batch"); err != nil {
		return Batch{}, err
	}
	return bt, bt.Validate()
}

// Validate checks the batch: version, 1..MaxBatch records, each valid, seqs strictly increasing.
func (b *Batch) Validate() error {
	if err := checkVersion(b.V, "log batch"); err != nil {
		return err
	}
	if len(b.Records) == 0 {
		return invalid("log batch: no records")
	}
	if len(b.Records) > MaxBatch {
		return invalid("log batch: %d records, at most %d", len(b.Records), MaxBatch)
	}
	var prev uint64
	for i := range b.Records {
		r := &b.Records[i]
		if err := r.Validate(); err != nil {
			return fmt.Errorf("records[%d]: %w", i, err)
		}
		if r.Seq <= prev {
			return invalid("records[%d]: seq %d not greater than previous %d", i, r.Seq, prev)
		}
		prev = r.Seq
	}
	return nil
}

// Validate checks one record.
func (r *Record) Validate() error {
	if r.Seq == 0 {
		return invalid("seq must be ≥ 1")
	}
	if r.Sensor == "" && r.Kind != KindAlert {
		return invalid("sensor is empty")
	}
	if err := checkText("sensor", r.Sensor, MaxSensorNameLen); err != nil {
		return err
	}
	switch r.Clock {
	case ClockSynced:
		if r.Time <= 0 {
			return invalid("t must be a unix ms time > 0 (or clock \"mono\" with boot and mono)")
		}
	case ClockMono:
		if r.Boot == "" || r.MonoMS < 0 {
			return invalid("clock \"mono\" needs boot and mono ≥ 0")
		}
		if err := checkText("boot", r.Boot, 64); err != nil {
			return err
		}
	default:
		return invalid("clock %q unknown (want \"\" or \"mono\")", r.Clock)
	}
	switch r.Kind {
	case KindReading:
		if r.Value == nil {
			return invalid("reading without value")
		}
		if math.IsNaN(*r.Value) || math.IsInf(*r.Value, 0) {
			return invalid("reading value is not finite")
		}
		if r.Alert != nil || r.Fault != nil {
			return invalid("reading carries alert or fault")
		}
		return checkText("unit", r.Unit, 16)
	case KindAlert:
		if r.Alert == nil {
			return invalid("alert record without alert")
		}
		a := r.Alert
		if a.Rule == "" {
			return invalid("alert.rule is empty")
		}
		if a.State != AlertRaised && a.State != AlertCleared {
			return invalid("alert.state %q (want raised or cleared)", a.State)
		}
		if math.IsNaN(a.Value) || math.IsInf(a.Value, 0) {
			return invalid("alert.value is not finite")
		}
		if len(a.Labels) > 32 {
			return invalid("alert.labels: %d labels, at most 32", len(a.Labels))
		}
		for _, f := range []struct{ n, v string }{{"alert.rule", a.Rule}, {"alert.severity", a.Severity}, {"alert.window", a.Window}, {"alert.message", a.Message}} {
			if err := checkText(f.n, f.v, MaxTextLen); err != nil {
				return err
			}
		}
		return nil
	case KindFault:
		if r.Fault == nil || r.Fault.Cause == "" {
			return invalid("fault record without fault.cause")
		}
		if err := checkText("fault.cause", r.Fault.Cause, 64); err != nil {
			return err
		}
		if sr := r.Fault.Seqs; sr != nil && (sr.First == 0 || sr.Last < sr.First) {
			return invalid("fault.seqs: %d..%d is not a range of seqs (want 1 ≤ first ≤ last)", sr.First, sr.Last)
		}
		return checkText("fault.detail", r.Fault.Detail, MaxTextLen)
	default:
		return invalid("kind %q unknown (want reading, alert or fault)", r.Kind)
	}
}

// EventTime returns the record's time as a time.Time, and whether it is wall-clock time.
func (r *Record) EventTime() (time.Time, bool) {
	if r.Clock == ClockMono {
		return time.Time{}, false
	}
	return time.UnixMilli(r.Time), true
}

// DecodeStatus decodes and validates a status (birth/will) payload.
func DecodeStatus(b []byte) (Status, error) {
	var s Status
	if err := decode(b, &s, "status"); err != nil {
		return Status{}, err
	}
	if err := checkVersion(s.V, "status"); err != nil {
		return Status{}, err
	}
	if s.State != "online" && s.State != "offline" {
		return Status{}, invalid("status: state %q (want online or offline)", s.State)
	}
	if s.HeartbeatS < 0 || s.HeartbeatS > 86400 {
		return Status{}, invalid("status: hb_s %d out of range 0..86400", s.HeartbeatS)
	}
	if err := checkText("status.fw", s.Firmware, 64); err != nil {
		return Status{}, err
	}
	return s, checkText("status.boot", s.Boot, 64)
}

// DecodeHeartbeat decodes and validates a heartbeat payload.
func DecodeHeartbeat(b []byte) (Heartbeat, error) {
	var h Heartbeat
	if err := decode(b, &h, "heartbeat"); err != nil {
		return Heartbeat{}, err
	}
	if err := checkVersion(h.V, "heartbeat"); err != nil {
		return Heartbeat{}, err
	}
	if h.UptimeS < 0 || h.Outbox < 0 {
		return Heartbeat{}, invalid("heartbeat: negative uptime_s or outbox")
	}
	if len(h.Sensors) > 256 {
		return Heartbeat{}, invalid("heartbeat: %d sensors, at most 256", len(h.Sensors))
	}
	return h, checkText("heartbeat.fw", h.Firmware, 64)
}

// DecodeTokenRequest decodes and validates a token refresh request.
func DecodeTokenRequest(b []byte) (TokenRequest, error) {
	var t TokenRequest
	if err := decode(b, &t, "token request"); err != nil {
		return TokenRequest{}, err
	}
	if err := checkVersion(t.V, "token request"); err != nil {
		return TokenRequest{}, err
	}
	if t.TTL != "" {
		d, err := time.ParseDuration(t.TTL)
		if err != nil || d <= 0 {
			return TokenRequest{}, invalid("token request: ttl %q is not a positive duration", t.TTL)
		}
	}
	return t, nil
}

// DecodeTokenResponse decodes a token refresh response.
func DecodeTokenResponse(b []byte) (TokenResponse, error) {
	var t TokenResponse
	if err := decode(b, &t, "token response"); err != nil {
		return TokenResponse{}, err
	}
	if err := checkVersion(t.V, "token response"); err != nil {
		return TokenResponse{}, err
	}
	if t.Error == "" && t.Token == "" {
		return TokenResponse{}, invalid("token response: neither token nor error")
	}
	return t, nil
}
