package protocol

import (
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// AppendRecordJSON appends json.Marshal(r) to b for a reading or fault-free
// record whose strings need no escaping (the records gateways send); it
// reports false, having appended nothing, for anything else (an alert or
// fault, a string encoding/json would escape): then use json.Marshal.
// FuzzAppendRecordJSON checks it against encoding/json.
func AppendRecordJSON(b []byte, r *Record) ([]byte, bool) {
	if r.Alert != nil || r.Fault != nil || !plain(r.Kind) || !plain(r.Clock) || !plain(r.Boot) || !plain(r.Sensor) || !plain(r.Unit) {
		return b, false
	}
	if r.Value != nil && (math.IsNaN(*r.Value) || math.IsInf(*r.Value, 0)) {
		return b, false // json.Marshal fails on these
	}
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = appendStr(append(b, `,"kind":`...), r.Kind)
	b = strconv.AppendInt(append(b, `,"t":`...), r.Time, 10)
	if r.Clock != "" {
		b = appendStr(append(b, `,"clock":`...), r.Clock)
	}
	if r.Boot != "" {
		b = appendStr(append(b, `,"boot":`...), r.Boot)
	}
	if r.MonoMS != 0 {
		b = strconv.AppendInt(append(b, `,"mono":`...), r.MonoMS, 10)
	}
	b = appendStr(append(b, `,"sensor":`...), r.Sensor)
	if r.Value != nil {
		b = appendFloat(append(b, `,"value":`...), *r.Value)
	}
	if r.Unit != "" {
		b = appendStr(append(b, `,"unit":`...), r.Unit)
	}
	return append(b, '}'), true
}

// plain reports whether encoding/json writes s as it is, between quotes.
func plain(s string) bool {
	ascii := true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return ascii || utf8.ValidString(s) && !strings.Contains(s, "\u2028") && !strings.Contains(s, "\u2029")
}

func appendStr(b []byte, s string) []byte {
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendFloat formats like encoding/json's float64 encoder.
func appendFloat(b []byte, f float64) []byte {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}
