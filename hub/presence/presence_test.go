package presence

import (
	"testing"
	"time"
)

type rec struct{ got []Transition }

func (r *rec) Transition(t Transition) { r.got = append(r.got, t) }

type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func states(ts []Transition) (s []string) {
	for _, t := range ts {
		s = append(s, t.State+"/"+t.Reason)
	}
	return s
}

func TestOrderingOldConnectionNeverWins(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	r := &rec{}
	tr := New(r, Options{Now: c.now}, map[string]uint64{"gw": 7})
	old, cur := new(int), new(int)
	if e := tr.Connected("gw", old, "a", time.Time{}); e != 8 {
		t.Fatalf("epoch = %d, want 8 (continues the stored epoch)", e)
	}
	e2 := tr.Connected("gw", cur, "b", time.Time{}) // takeover: new session first
	if e2 != 9 {
		t.Fatalf("epoch = %d", e2)
	}
	// The old connection's disconnect and will arrive late.
	if tr.Disconnected("gw", old, ReasonWill) {
		t.Fatal("late disconnect of an old connection changed state")
	}
	tr.Heartbeat("gw", old, "") // ignored
	if got := tr.Counts()[Online]; got != 1 {
		t.Fatalf("online = %d, want 1", got)
	}
	if !tr.Disconnected("gw", cur, ReasonClean) {
		t.Fatal("current connection's disconnect ignored")
	}
	want := []string{"online/connected", "online/connected", "offline/clean_disconnect"}
	if g := states(r.got); len(g) != 3 || g[2] != want[2] {
		t.Fatalf("transitions = %v, want %v", g, want)
	}
	if r.got[2].Epoch != 9 {
		t.Fatalf("offline epoch = %d", r.got[2].Epoch)
	}
}

func TestStaleAndResume(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	r := &rec{}
	tr := New(r, Options{Now: c.now, StaleAfter: 3}, nil)
	conn := new(int)
	tr.Connected("gw", conn, "", time.Time{})
	tr.Birth("gw", conn, 10, "1.0.0")
	c.add(29 * time.Second)
	tr.Tick()
	if len(r.got) != 1 {
		t.Fatalf("stale too early: %v", states(r.got))
	}
	c.add(2 * time.Second)
	tr.Tick()
	tr.Tick() // no repeat
	if g := states(r.got); len(g) != 2 || g[1] != "stale/heartbeat_missed" {
		t.Fatalf("transitions = %v", g)
	}
	tr.Heartbeat("gw", conn, "")
	if g := states(r.got); len(g) != 3 || g[2] != "online/heartbeat_resumed" {
		t.Fatalf("transitions = %v", g)
	}
	// A plain MQTT client that announced nothing never goes stale.
	tr.Connected("plug", new(int), "", time.Time{})
	c.add(time.Hour)
	tr.Tick()
	if n := tr.Counts(); n[Online] != 1 || n[Stale] != 1 {
		t.Fatalf("counts = %v", n)
	}
}

func TestFlappingSummarised(t *testing.T) {
	c := &clock{time.Unix(1000, 0)}
	r := &rec{}
	tr := New(r, Options{Now: c.now, FlapCount: 4, FlapWindow: time.Minute}, nil)
	for i := 0; i < 10; i++ {
		conn := new(int)
		tr.Connected("gw", conn, "", time.Time{})
		c.add(time.Second)
		tr.Disconnected("gw", conn, ReasonLost)
		c.add(time.Second)
	}
	if len(r.got) != 20 {
		t.Fatalf("every transition must be recorded: %d", len(r.got))
	}
	notified := 0
	for _, x := range r.got {
		if x.Notify {
			notified++
		}
	}
	if notified != 4 { // 3 calm ones, then the one that starts flapping
		t.Fatalf("notified %d events, want 4", notified)
	}
	if !r.got[19].Flapping {
		t.Fatal("last transition should be marked flapping")
	}
	// Calm again after the window: events flow.
	c.add(2 * time.Minute)
	tr.Connected("gw", new(int), "", time.Time{})
	if last := r.got[len(r.got)-1]; !last.Notify || last.Flapping {
		t.Fatalf("after calm period: %+v", last)
	}
}
