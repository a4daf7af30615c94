package gateway

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Clock stamps records. A Raspberry Pi has no real-time clock: until the
// kernel reports the clock synchronised (clock.source "ntp"), records carry
// the boot id and milliseconds since boot instead of a wall time that may be
// 1970 or the last shutdown's. The uplink turns them into wall time once the
// clock is synchronised, if they are still waiting in the outbox.
type Clock struct {
	source   string
	boot     string
	bootMono time.Duration // uptime when the process started
	start    time.Time     // process start (monotonic reading)
	synced   func() bool

	mu        sync.Mutex
	checked   time.Time
	lastState bool
}

// MonoEpoch is the time base the rules engine sees while the clock is not
// synchronised: boot-relative event time, shifted past the engine's lower bound.
var MonoEpoch = time.Unix(86400, 0)

// NewClock returns a clock for source "ntp" or "system".
func NewClock(source string) *Clock {
	c := &Clock{source: source, start: time.Now(), synced: kernelSynced}
	c.boot = bootID()
	c.bootMono = uptime()
	return c
}

// Synced reports whether the wall clock can be trusted now (cached for 5 s).
func (c *Clock) Synced() bool {
	if c.source == "system" {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.checked) < 5*time.Second && !c.checked.IsZero() {
		return c.lastState
	}
	c.checked, c.lastState = time.Now(), c.synced()
	return c.lastState
}

// Boot returns the boot id.
func (c *Clock) Boot() string { return c.boot }

// SinceBoot returns the time since boot now.
func (c *Clock) SinceBoot() time.Duration { return c.bootMono + time.Since(c.start) }

// Now returns the event time to use now and whether it is wall-clock time.
func (c *Clock) Now() (time.Time, bool) {
	if c.Synced() {
		return time.Now(), true
	}
	return MonoEpoch.Add(c.SinceBoot()), false
}

func bootID() string {
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		if s := strings.TrimSpace(string(b)); s != "" {
			return s
		}
	}
	var r [16]byte
	_, _ = rand.Read(r[:])
	return hex.EncodeToString(r[:])
}

func uptime() time.Duration {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	s, err := strconv.ParseFloat(f, 64)
	if err != nil {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}
