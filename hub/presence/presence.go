// Package presence tracks which devices are online from their connections,
// birth messages, heartbeats and last-wills. It is pure state plus a ticker:
// time comes from an injected clock, and every transition goes to a Sink.
//
// Ordering: each connection gets a hub-side epoch (like Sparkplug's bdSeq).
// A disconnect, will or heartbeat that belongs to an older connection than
// the device's current one never changes the device's state.
package presence

import (
	"context"
	"sync"
	"time"
)

// States.
const (
	Online  = "online"
	Stale   = "stale"
	Offline = "offline"
)

// Reasons for transitions.
const (
	ReasonConnected        = "connected"
	ReasonHeartbeatMissed  = "heartbeat_missed"
	ReasonHeartbeatResumed = "heartbeat_resumed"
	ReasonClean            = "clean_disconnect"
	ReasonWill             = "last_will"
	ReasonKeepalive        = "keepalive_timeout"
	ReasonRevoked          = "revoked"
	ReasonExpired          = "token_expired"
	ReasonTakenOver        = "taken_over"
	ReasonLost             = "connection_lost"
	ReasonShutdown         = "server_shutdown"
	ReasonHubRestart       = "hub_restart"
)

// Transition is one state change of one device.
type Transition struct {
	Device   string
	Time     time.Time
	State    string
	Reason   string
	Epoch    uint64
	Remote   string
	Flapping bool // the device changes state too often; events are summarised
	Notify   bool // publish this one (false while flapping suppresses events)

	// Context for the device row.
	HeartbeatS int
	Firmware   string
	TokenExp   time.Time
}

// Sink receives every transition (to store it) in order per device.
type Sink interface {
	Transition(Transition)
}

// Options configure the tracker.
type Options struct {
	StaleAfter int           // missed heartbeat intervals before stale; default 3
	FlapWindow time.Duration // default 1 min
	FlapCount  int           // transitions within FlapWindow that make a device flapping; default 6
	Now        func() time.Time
}

type device struct {
	state    string
	since    time.Time
	epoch    uint64
	conn     any // identity of the current connection
	remote   string
	hbS      int
	lastHB   time.Time
	fw       string
	tokenExp time.Time
	recent   []time.Time // transition times within FlapWindow
	flapping bool
}

// Tracker is safe for concurrent use.
type Tracker struct {
	opts Options
	sink Sink

	mu      sync.Mutex
	devices map[string]*device
}

// New returns a tracker. epochs seeds each known device's last epoch so
// epochs keep increasing across hub restarts.
func New(sink Sink, opts Options, epochs map[string]uint64) *Tracker {
	if opts.StaleAfter <= 0 {
		opts.StaleAfter = 3
	}
	if opts.FlapWindow <= 0 {
		opts.FlapWindow = time.Minute
	}
	if opts.FlapCount <= 0 {
		opts.FlapCount = 6
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	t := &Tracker{opts: opts, sink: sink, devices: map[string]*device{}}
	for id, e := range epochs {
		t.devices[id] = &device{state: Offline, epoch: e}
	}
	return t
}

func (t *Tracker) dev(id string) *device {
	d := t.devices[id]
	if d == nil {
		d = &device{state: Offline}
		t.devices[id] = d
	}
	return d
}

// transition changes d's state and reports it; t.mu is held.
func (t *Tracker) transition(id string, d *device, state, reason string, now time.Time) {
	d.state, d.since = state, now
	cut := now.Add(-t.opts.FlapWindow)
	keep := d.recent[:0]
	for _, r := range d.recent {
		if r.After(cut) {
			keep = append(keep, r)
		}
	}
	d.recent = append(keep, now)
	wasFlapping := d.flapping
	d.flapping = len(d.recent) >= t.opts.FlapCount || (wasFlapping && len(d.recent) > 1)
	tr := Transition{
		Device: id, Time: now, State: state, Reason: reason, Epoch: d.epoch, Remote: d.remote,
		Flapping: d.flapping, HeartbeatS: d.hbS, Firmware: d.fw, TokenExp: d.tokenExp,
		// Publish every transition of a calm device, and the one that starts a flapping period.
		Notify: !d.flapping || !wasFlapping,
	}
	t.sink.Transition(tr)
}

// Connected records a new authenticated connection and returns its epoch.
func (t *Tracker) Connected(id string, conn any, remote string, tokenExp time.Time) uint64 {
	now := t.opts.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.dev(id)
	d.epoch++
	d.conn, d.remote, d.tokenExp = conn, remote, tokenExp
	d.hbS, d.lastHB = 0, now
	t.transition(id, d, Online, ReasonConnected, now)
	return d.epoch
}

// Birth applies a device's birth message (heartbeat interval, firmware).
func (t *Tracker) Birth(id string, conn any, hbS int, firmware string) {
	now := t.opts.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.devices[id]
	if d == nil || d.conn != conn {
		return
	}
	d.hbS, d.lastHB = hbS, now
	if firmware != "" {
		d.fw = firmware
	}
}

// Heartbeat records a heartbeat on conn; a stale device becomes online again.
func (t *Tracker) Heartbeat(id string, conn any, firmware string) {
	now := t.opts.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.devices[id]
	if d == nil || d.conn != conn {
		return
	}
	d.lastHB = now
	if firmware != "" {
		d.fw = firmware
	}
	if d.state == Stale {
		t.transition(id, d, Online, ReasonHeartbeatResumed, now)
	}
}

// IsCurrent reports whether conn is the device's current connection.
func (t *Tracker) IsCurrent(id string, conn any) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.devices[id]
	return d != nil && d.conn == conn
}

// Disconnected records the end of conn. It returns false (and changes
// nothing) when conn is not the device's current connection.
func (t *Tracker) Disconnected(id string, conn any, reason string) bool {
	now := t.opts.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	d := t.devices[id]
	if d == nil || d.conn != conn || d.state == Offline {
		return false
	}
	d.conn = nil
	t.transition(id, d, Offline, reason, now)
	return true
}

// Tick marks online devices with an announced heartbeat interval stale when
// StaleAfter intervals passed without one.
func (t *Tracker) Tick() {
	now := t.opts.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, d := range t.devices {
		if d.state != Online || d.hbS <= 0 {
			continue
		}
		if now.Sub(d.lastHB) > time.Duration(t.opts.StaleAfter*d.hbS)*time.Second {
			t.transition(id, d, Stale, ReasonHeartbeatMissed, now)
		}
	}
}

// Run ticks every interval until ctx ends.
func (t *Tracker) Run(ctx context.Context, every time.Duration) error {
	tk := time.NewTicker(every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tk.C:
			t.Tick()
		}
	}
}

// Counts returns the number of devices per state.
func (t *Tracker) Counts() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := map[string]int{Online: 0, Stale: 0, Offline: 0}
	for _, d := range t.devices {
		c[d.state]++
	}
	return c
}
