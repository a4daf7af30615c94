package rules

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/outpost-iot/outpost/internal/protocol"
)

const (
	defaultMessage      = "${rule}: ${sensor} ${window} ${value}"
	defaultClearMessage = "${rule} cleared: ${sensor} ${window} ${value}"
)

type placeholder uint8

const (
	phNone placeholder = iota
	phRule
	phSensor
	phValue
	phWindow
	phSeverity
	phState
)

var placeholders = map[string]placeholder{
	"rule": phRule, "sensor": phSensor, "value": phValue,
	"window": phWindow, "severity": phSeverity, "state": phState,
}

// template is a parsed message: literal text and placeholders.
type template []segment

type segment struct {
	lit string
	ph  placeholder
}

func parseTemplate(s, def string) (template, error) {
	if s == "" {
		s = def
	}
	if len(s) > protocol.MaxTextLen {
		return nil, fmt.Errorf("is %d bytes, at most %d", len(s), protocol.MaxTextLen)
	}
	var t template
	for s != "" {
		i := strings.Index(s, "${")
		if i < 0 {
			t = append(t, segment{lit: s})
			break
		}
		if i > 0 {
			t = append(t, segment{lit: s[:i]})
		}
		s = s[i+2:]
		j := strings.IndexByte(s, '}')
		if j < 0 {
			return nil, fmt.Errorf("unterminated placeholder \"${%s\"", s)
		}
		ph, ok := placeholders[s[:j]]
		if !ok {
			return nil, fmt.Errorf("unknown placeholder \"${%s}\" (want one of ${%s})", s[:j],
				strings.Join(slices.Sorted(maps.Keys(placeholders)), "} ${"))
		}
		t = append(t, segment{ph: ph})
		s = s[j+1:]
	}
	return t, nil
}

// render expands t for e. It allocates; it runs only on transitions.
func (t template) render(e *Event) string {
	var b strings.Builder
	b.Grow(64)
	for _, sg := range t {
		switch sg.ph {
		case phNone:
			b.WriteString(sg.lit)
		case phRule:
			b.WriteString(e.Rule)
		case phSensor:
			b.WriteString(e.Sensor)
		case phValue:
			b.WriteString(formatValue(e.Value))
		case phWindow:
			b.WriteString(e.Window)
		case phSeverity:
			b.WriteString(e.Severity)
		case phState:
			b.WriteString(string(e.State))
		}
	}
	return truncate(b.String(), protocol.MaxTextLen)
}

// formatValue prints v rounded to three decimals, without trailing zeros.
func formatValue(v float64) string {
	if math.Abs(v) >= 1e15 || math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'g', 6, 64)
	}
	r := math.Round(v*1000) / 1000
	if r == 0 {
		r = 0 // no "-0"
	}
	return strconv.FormatFloat(r, 'f', -1, 64)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 {
		r, size := utf8.DecodeLastRuneInString(s)
		if r != utf8.RuneError || size > 1 {
			break
		}
		s = s[:len(s)-1]
	}
	return s
}

// formatDuration prints d compactly: 1m, 90s, 1h30m, 500ms.
func formatDuration(d time.Duration) string {
	if d <= 0 || d%time.Second != 0 {
		return d.String()
	}
	var b strings.Builder
	for _, u := range []struct {
		d time.Duration
		s string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.d; n > 0 {
			b.WriteString(strconv.FormatInt(int64(n), 10))
			b.WriteString(u.s)
			d -= n * u.d
		}
	}
	return b.String()
}

// describe is the human description of what a rule judges, e.g.
// "avg 1m tumbling", "max 5m hopping 1m", "avg last 10", "reading",
// "change per reading", "zscore last 100".
func describe(r *rule) string {
	switch r.kind {
	case kindRate:
		s := "change"
		switch r.direction {
		case dirUp:
			s = "rise"
		case dirDown:
			s = "fall"
		}
		if r.perSecond {
			return s + " per second"
		}
		return s + " per reading"
	case kindZScore:
		return "zscore last " + strconv.Itoa(r.count)
	}
	switch r.win {
	case winTumbling:
		return r.agg.String() + " " + formatDuration(time.Duration(r.size)) + " tumbling"
	case winHopping:
		return r.agg.String() + " " + formatDuration(time.Duration(r.size)) + " hopping " + formatDuration(time.Duration(r.step))
	case winCount:
		return r.agg.String() + " last " + strconv.Itoa(r.count)
	}
	return "reading"
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }
