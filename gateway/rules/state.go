package rules

import (
	"math"
	"time"
)

// maxPending bounds the reorder buffer of one (rule, sensor). When it is
// full the oldest reading is judged early, which narrows the lateness that
// sensor effectively gets (a reading older than it then counts as late).
const maxPending = 1 << 14

// state is everything one rule keeps for one sensor.
type state struct {
	r      *rule
	sensor string

	// Event time.
	wm   int64 // watermark: latest event time seen or advanced to
	done int64 // readings up to done are judged; a reading before done is late
	pend reorder

	// What is judged.
	tw      *timeWin  // tumbling, hopping
	cw      *countWin // count windows, zscore
	hasPrev bool      // rate
	prevT   int64
	prevV   float64

	// The alert.
	active  bool
	pending bool  // raise holds, waiting for `for`
	since   int64 // when raise began to hold
	last    obs   // the latest judgement
	raised  Event // the raise event, while active
}

// obs is one judgement: a value and the event time it is known at, with the
// bounds of what it covers.
type obs struct {
	v      float64
	t      int64
	ws, we int64
}

func newState(r *rule, sensor string, floor int64) state {
	s := state{r: r, sensor: sensor, wm: floor, done: max(floor-r.lateness, 0)}
	switch {
	case r.win == winTumbling || r.win == winHopping:
		s.tw = newTimeWin(r)
	case r.win == winCount:
		s.cw = newCountWin(r)
	}
	return s
}

// observe takes a valid reading at event time t. It reports whether the
// reading was late (and so dropped).
func (s *state) observe(dst []Event, t int64, v float64) ([]Event, bool) {
	if t < s.done {
		return dst, true
	}
	if t > s.wm {
		s.wm = t
	}
	if s.r.lateness == 0 {
		// In order by construction: t ≥ done == wm.
		dst = s.feed(dst, t, v)
		s.done = t
		return dst, false
	}
	s.pend.insert(t, v)
	if s.pend.len() > maxPending {
		o := s.pend.front()
		s.pend.pop()
		dst = s.feed(dst, o.t, o.v)
		s.done = max(s.done, o.t)
	}
	return s.release(dst), false
}

// advance moves the watermark to at least now.
func (s *state) advance(dst []Event, now int64) []Event {
	if now > s.wm {
		s.wm = now
	}
	return s.release(dst)
}

// release judges the buffered readings the watermark has passed by the
// allowed lateness, then lets event time reach wm - lateness.
func (s *state) release(dst []Event) []Event {
	target := s.wm - s.r.lateness
	for s.pend.len() > 0 && s.pend.front().t <= target {
		o := s.pend.front()
		s.pend.pop()
		dst = s.feed(dst, o.t, o.v)
	}
	if target > s.done {
		dst = s.progress(dst, target)
		s.done = target
	}
	return dst
}

// feed judges one reading; readings come in event-time order.
func (s *state) feed(dst []Event, t int64, v float64) []Event {
	r := s.r
	switch r.kind {
	case kindRate:
		if s.hasPrev {
			d := v - s.prevV
			ok := true
			if r.perSecond {
				dt := t - s.prevT
				ok = dt > 0
				d /= float64(dt) / float64(time.Second)
			}
			switch r.direction {
			case dirAny:
				d = math.Abs(d)
			case dirDown:
				d = -d
			}
			if ok {
				dst = s.judge(dst, obs{v: d, t: t, ws: s.prevT, we: t})
			}
		}
		s.hasPrev, s.prevT, s.prevV = true, t, v
		return s.tick(dst, t)
	case kindZScore:
		w := s.cw
		if w.size >= int64(r.minSamples) {
			sd := math.Max(stddev(w.m2, w.size), r.minStddev)
			dev := math.Abs(v - w.mean)
			switch {
			case sd > 0:
				dst = s.judge(dst, obs{v: dev / sd, t: t, ws: w.oldest(), we: t})
			case dev == 0:
				dst = s.judge(dst, obs{v: 0, t: t, ws: w.oldest(), we: t})
			}
		}
		w.push(t, v)
		return s.tick(dst, t)
	}
	switch r.win {
	case winCount:
		w := s.cw
		w.push(t, v)
		if w.size >= int64(r.minSamples) {
			return s.judge(dst, obs{v: w.value(r.agg), t: t, ws: w.oldest(), we: t})
		}
		return s.tick(dst, t)
	case winTumbling, winHopping:
		dst = s.closeWindows(dst, t)
		s.tw.add(floorDiv(t, r.step), v)
		return s.tick(dst, t)
	}
	return s.judge(dst, obs{v: v, t: t, ws: t, we: t})
}

// progress lets event time reach t without a reading.
func (s *state) progress(dst []Event, t int64) []Event {
	if s.tw != nil {
		dst = s.closeWindows(dst, t)
	}
	return s.tick(dst, t)
}

// closeWindows judges every window that ends at or before t.
func (s *state) closeWindows(dst []Event, t int64) []Event {
	w, r := s.tw, s.r
	if !w.started {
		return dst
	}
	k := r.panes()
	end := floorDiv(t, r.step) // windows j < end close
	for j := w.next; j < end; j++ {
		e := (j + 1) * r.step
		if j >= w.lastData+k {
			// This and every later window up to t are empty. An empty
			// window matters only to count, and the first judgement of a
			// silence says it all (so it does not depend on how often
			// Advance is called).
			if r.agg == aggCount && j == w.lastData+k {
				dst = s.judge(dst, obs{v: 0, t: e, ws: e - r.size, we: e})
			}
			break
		}
		st := w.window(j)
		if r.agg == aggCount || st.n > 0 && st.n >= int64(r.minSamples) {
			dst = s.judge(dst, obs{v: st.value(r.agg), t: e, ws: e - r.size, we: e})
		}
	}
	if end > w.next {
		w.next = end
	}
	return dst
}

// tick fires a pending `for` whose duration has fully passed before t.
func (s *state) tick(dst []Event, t int64) []Event {
	if s.pending && !s.active && s.since+s.r.forDur < t {
		dst = s.raise(dst, s.since+s.r.forDur)
	}
	return dst
}

// judge runs the alert state machine on one judgement.
func (s *state) judge(dst []Event, o obs) []Event {
	dst = s.tick(dst, o.t)
	if math.IsNaN(o.v) || math.IsInf(o.v, 0) {
		return dst
	}
	s.last = o
	r := s.r
	if r.trace != nil {
		r.trace(s.sensor, o)
	}
	if s.active {
		if r.clear.holds(o.v) {
			dst = s.clearAlert(dst, o.t)
		}
		return dst
	}
	if !r.raise.holds(o.v) {
		s.pending = false
		return dst
	}
	if !s.pending {
		s.pending, s.since = true, o.t
	}
	if o.t-s.since >= r.forDur {
		dst = s.raise(dst, o.t)
	}
	return dst
}

func (s *state) raise(dst []Event, at int64) []Event {
	s.active, s.pending = true, false
	s.raised = s.event(Raised, at)
	return append(dst, s.raised)
}

func (s *state) clearAlert(dst []Event, at int64) []Event {
	s.active, s.pending = false, false
	s.raised = Event{}
	return append(dst, s.event(Cleared, at))
}

func (s *state) event(tr Transition, at int64) Event {
	r := s.r
	e := Event{
		State:       tr,
		Rule:        r.name,
		Sensor:      s.sensor,
		Severity:    r.severity,
		Labels:      r.labels,
		Value:       s.last.v,
		Window:      r.window,
		WindowStart: unixTime(s.last.ws),
		WindowEnd:   unixTime(s.last.we),
		Since:       unixTime(s.since),
		Time:        unixTime(at),
	}
	if tr == Raised {
		e.Message = r.msg.render(&e)
	} else {
		e.Message = r.clearMsg.render(&e)
	}
	return e
}

func unixTime(ns int64) time.Time { return time.Unix(0, ns).UTC() }

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}
