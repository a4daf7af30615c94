package ota

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/outpost-iot/outpost/internal/protocol"
)

func TestParseWaves(t *testing.T) {
	cases := []struct {
		in      []string
		n       int
		want    []int // cumulative devices for n
		wantErr string
	}{
		{nil, 7, []int{7}, ""},
		{[]string{"5%", "25%", "100%"}, 100, []int{5, 25, 100}, ""},
		{[]string{"5%", "25%", "100%"}, 10, []int{1, 3, 10}, ""}, // rounded up: a canary is never empty
		{[]string{"5%", "25%", "100%"}, 1, []int{1, 1, 1}, ""},   // later waves empty
		{[]string{"1", "10", "100%"}, 5, []int{1, 5, 5}, ""},
		{[]string{" 50% ", "100%"}, 3, []int{2, 3}, ""},
		{[]string{"50%"}, 1, nil, "must be 100%"},
		{[]string{"0%", "100%"}, 1, nil, "(0, 100]"},
		{[]string{"50%", "50%", "100%"}, 1, nil, "must increase"},
		{[]string{"3", "2", "100%"}, 1, nil, "must increase"},
		{[]string{"half", "100%"}, 1, nil, "percentage like 25%"},
		{[]string{"120%"}, 1, nil, "(0, 100]"},
		{[]string{"NaN%"}, 1, nil, "(0, 100]"},
	}
	for _, tc := range cases {
		ws, err := parseWaves(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got := cumulative(ws, tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("%q of %d: %v, want %v", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestAssignWavesIsDeterministicAndSized(t *testing.T) {
	ws, _ := parseWaves([]string{"5%", "25%", "100%"})
	var devs []string
	for i := range 200 {
		devs = append(devs, fmt.Sprintf("gw-%03d", i))
	}
	a := assignWaves("r-1", devs, ws)
	rev := slices.Clone(devs)
	slices.Reverse(rev)
	if b := assignWaves("r-1", rev, ws); fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("assignment depends on the input order")
	}
	sizes := map[int]int{}
	for _, w := range a {
		sizes[w]++
	}
	if sizes[1] != 10 || sizes[2] != 40 || sizes[3] != 150 {
		t.Fatalf("wave sizes %v, want 10/40/150", sizes)
	}
	// Another rollout picks other canaries.
	c := assignWaves("r-2", devs, ws)
	same := 0
	for d, w := range a {
		if w == 1 && c[d] == 1 {
			same++
		}
	}
	if same == 10 {
		t.Fatal("every rollout gets the same canaries")
	}
}

func TestLimit(t *testing.T) {
	cases := []struct {
		in                 string
		failures, notified int
		exceeded           bool
	}{
		{"", 1, 100, true}, // default 0: any failure pauses
		{"", 0, 100, false},
		{"10%", 1, 10, false},
		{"10%", 2, 10, true},
		{"10%", 1, 5, true},
		{"20%", 1, 5, false},
		{"0%", 1, 1000, true},
		{"100%", 10, 10, false},
		{"2.5%", 1, 40, false},
		{"2.5%", 2, 40, true},
		{"3", 3, 5, false},
		{"3", 4, 100, true},
	}
	for _, tc := range cases {
		l, err := ParseLimit(tc.in)
		if err != nil {
			t.Fatalf("%q: %v", tc.in, err)
		}
		if got := l.Exceeded(tc.failures, tc.notified); got != tc.exceeded {
			t.Errorf("%q: %d of %d exceeded = %v", tc.in, tc.failures, tc.notified, got)
		}
	}
	for _, bad := range []string{"-1", "x", "101%", "-5%", "1.5"} {
		if _, err := ParseLimit(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	var req RolloutRequest
	if err := json.Unmarshal([]byte(`{"max_failures": 3}`), &req); err != nil || req.MaxFailures.String() != "3" {
		t.Fatalf("number: %v %v", req.MaxFailures, err)
	}
	if err := json.Unmarshal([]byte(`{"max_failures": "10%"}`), &req); err != nil || req.MaxFailures.String() != "10%" {
		t.Fatalf("string: %v %v", req.MaxFailures, err)
	}
	if err := json.Unmarshal([]byte(`{"max_failures": true}`), &req); err == nil {
		t.Fatal("bool accepted")
	}
}

// rolloutWith builds a rollout whose devices have the given waves and states.
func rolloutWith(waves []string, limit string, wave int, states ...string) *rollout {
	l, _ := ParseLimit(limit)
	r := &rollout{id: "r", state: RolloutActive, waves: waves, wave: wave, limit: l}
	for i, s := range states {
		w, st, _ := strings.Cut(s, ":")
		var wn int
		fmt.Sscan(w, &wn)
		r.devices = append(r.devices, DeviceStatus{Device: fmt.Sprint("d", i), Wave: wn, State: st})
	}
	return r
}

func TestAdvance(t *testing.T) {
	ok, failed, pend := protocol.OTASucceeded, protocol.OTAFailed, DevicePending
	cases := []struct {
		name      string
		r         *rollout
		wantState string
		wantWave  int
	}{
		{"wave in progress", rolloutWith([]string{"50%", "100%"}, "0", 1, "1:"+ok, "1:downloading", "2:"+pend), RolloutActive, 1},
		{"wave done: next starts", rolloutWith([]string{"50%", "100%"}, "0", 1, "1:"+ok, "1:"+ok, "2:"+pend), RolloutActive, 2},
		{"empty waves are skipped", rolloutWith([]string{"1", "2", "100%"}, "0", 1, "1:"+ok, "3:"+pend), RolloutActive, 3},
		{"last wave done: completed", rolloutWith([]string{"100%"}, "1", 1, "1:"+ok, "1:"+failed), RolloutCompleted, 1},
		{"failures over the limit pause", rolloutWith([]string{"50%", "100%"}, "10%", 1, "1:"+failed, "1:downloading", "2:"+pend), RolloutPaused, 1},
		{"failure within the limit advances", rolloutWith([]string{"50%", "100%"}, "50%", 1, "1:"+failed, "1:"+ok, "2:"+pend), RolloutActive, 2},
	}
	for _, tc := range cases {
		tc.r.advance(1)
		if tc.r.state != tc.wantState || tc.r.wave != tc.wantWave {
			t.Errorf("%s: %s wave %d, want %s wave %d (%s)", tc.name, tc.r.state, tc.r.wave, tc.wantState, tc.wantWave, tc.r.reason)
		}
	}
	// Accepted failures (after a resume) do not count again.
	r := rolloutWith([]string{"100%"}, "0", 1, "1:"+failed, "1:downloading")
	r.accepted = 1
	if r.advance(1); r.state != RolloutActive {
		t.Fatalf("accepted failure paused again: %s", r.reason)
	}
}

func TestWantsNotice(t *testing.T) {
	r := rolloutWith([]string{"50%", "100%"}, "0", 1, "1:notified", "1:downloading", "1:succeeded", "2:pending")
	want := func() []bool {
		var out []bool
		for _, d := range r.devices {
			out = append(out, r.wantsNotice(d))
		}
		return out
	}
	if got := want(); fmt.Sprint(got) != "[true true false false]" {
		t.Fatalf("active: %v", got)
	}
	r.state = RolloutPaused
	if got := want(); fmt.Sprint(got) != "[false true false false]" {
		t.Fatalf("paused: %v (in flight keeps its notice)", got)
	}
	r.state = RolloutAborted
	if got := want(); fmt.Sprint(got) != "[false false false false]" {
		t.Fatalf("aborted: %v", got)
	}
}
