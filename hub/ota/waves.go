package ota

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// waveSpec is one wave's cumulative size: a percentage of the targeted
// devices, or a count of them.
type waveSpec struct {
	text  string
	pct   float64 // > 0 when a percentage
	count int     // > 0 when a count
}

// parseWaves parses cumulative wave sizes such as ["5%","25%","100%"] or
// ["1","10","100%"]. The last wave must be "100%", so every targeted
// device is in some wave; sizes of one kind must increase.
func parseWaves(in []string) ([]waveSpec, error) {
	if len(in) == 0 {
		in = []string{"100%"}
	}
	if len(in) > 100 {
		return nil, fmt.Errorf("waves: %d waves, at most 100", len(in))
	}
	out := make([]waveSpec, 0, len(in))
	var lastPct float64
	lastCount := 0
	for i, w := range in {
		w = strings.TrimSpace(w)
		if p, ok := strings.CutSuffix(w, "%"); ok {
			v, err := strconv.ParseFloat(p, 64)
			if err != nil || math.IsNaN(v) || v <= 0 || v > 100 {
				return nil, fmt.Errorf("waves[%d] %q: want a percentage in (0, 100]", i, w)
			}
			if v <= lastPct {
				return nil, fmt.Errorf("waves[%d] %q: percentages are cumulative and must increase (previous %g%%)", i, w, lastPct)
			}
			lastPct = v
			out = append(out, waveSpec{text: w, pct: v})
			continue
		}
		n, err := strconv.Atoi(w)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("waves[%d] %q: want a percentage like 25%% or a device count ≥ 1", i, w)
		}
		if n <= lastCount {
			return nil, fmt.Errorf("waves[%d] %q: counts are cumulative and must increase (previous %d)", i, w, lastCount)
		}
		lastCount = n
		out = append(out, waveSpec{text: w, count: n})
	}
	if last := out[len(out)-1]; last.pct != 100 {
		return nil, fmt.Errorf("waves: the last wave is %q; it must be 100%% so that every targeted device is updated", last.text)
	}
	return out, nil
}

// cumulative returns, for n devices, how many are in waves 1..i for each i:
// non-decreasing, the last equal to n. A percentage rounds up, so a first
// wave of 5% of 10 devices is one device.
func cumulative(ws []waveSpec, n int) []int {
	out := make([]int, len(ws))
	prev := 0
	for i, w := range ws {
		c := w.count
		if w.pct > 0 {
			c = int(math.Ceil(w.pct * float64(n) / 100))
		}
		c = min(max(c, prev), n)
		out[i] = c
		prev = c
	}
	return out
}

// assignWaves orders devices by SHA-256 of the rollout id and the device id
// (deterministic, and a different canary set for each rollout) and returns
// each device's 1-based wave.
func assignWaves(rolloutID string, devices []string, ws []waveSpec) map[string]int {
	type keyed struct {
		id  string
		key [32]byte
	}
	ks := make([]keyed, len(devices))
	for i, d := range devices {
		ks[i] = keyed{d, sha256.Sum256([]byte(rolloutID + "\x00" + d))}
	}
	slices.SortFunc(ks, func(a, b keyed) int {
		if c := bytes.Compare(a.key[:], b.key[:]); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	cum := cumulative(ws, len(devices))
	out := make(map[string]int, len(devices))
	w := 0
	for i, k := range ks {
		for i >= cum[w] {
			w++
		}
		out[k.id] = w + 1
	}
	return out
}

// Limit is a rollout's failure limit: a percentage of the devices notified
// so far ("10%") or a count ("3"). In JSON it is a string or a number.
type Limit struct {
	Pct   float64
	Count int
	IsPct bool
}

// ParseLimit parses "10%", "2.5%" or "3"; "" is "0" (any failure pauses).
func ParseLimit(s string) (Limit, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Limit{}, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || math.IsNaN(v) || v < 0 || v > 100 {
			return Limit{}, fmt.Errorf("max_failures %q: want a percentage in [0, 100] or a count", s)
		}
		return Limit{Pct: v, IsPct: true}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return Limit{}, fmt.Errorf("max_failures %q: want a percentage like 10%% or a count ≥ 0", s)
	}
	return Limit{Count: n}, nil
}

func (l Limit) String() string {
	if l.IsPct {
		return strconv.FormatFloat(l.Pct, 'f', -1, 64) + "%"
	}
	return strconv.Itoa(l.Count)
}

// Exceeded reports whether failures among the notified devices pass the
// limit: for a percentage, when failures/notified > pct.
func (l Limit) Exceeded(failures, notified int) bool {
	if failures <= 0 {
		return false
	}
	if l.IsPct {
		return float64(failures)*100 > l.Pct*float64(notified)
	}
	return failures > l.Count
}

// MarshalJSON writes the limit as its string form.
func (l Limit) MarshalJSON() ([]byte, error) { return json.Marshal(l.String()) }

// UnmarshalJSON accepts "10%", "3" or 3.
func (l *Limit) UnmarshalJSON(b []byte) error {
	var s string
	if len(b) > 0 && b[0] != '"' {
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("max_failures: want a string like \"10%%\" or a count")
		}
		s = n.String()
	} else if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := ParseLimit(s)
	if err != nil {
		return err
	}
	*l = v
	return nil
}
