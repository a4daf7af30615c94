package rules

import "math"

// stats is a running summary of values: count, mean and sum of squared
// deviations (Welford), min, max and the latest value.
type stats struct {
	n        int64
	mean, m2 float64
	min, max float64
	last     float64
}

func (s *stats) reset() { *s = stats{min: math.Inf(1), max: math.Inf(-1)} }

func (s *stats) add(v float64) {
	s.n++
	d := v - s.mean
	s.mean += d / float64(s.n)
	s.m2 += d * (v - s.mean)
	s.min = math.Min(s.min, v)
	s.max = math.Max(s.max, v)
	s.last = v
}

// merge folds o, which covers later readings than s, into s (Chan et al.).
func (s *stats) merge(o *stats) {
	if o.n == 0 {
		return
	}
	if s.n == 0 {
		*s = *o
		return
	}
	n := s.n + o.n
	d := o.mean - s.mean
	s.mean += d * float64(o.n) / float64(n)
	s.m2 += o.m2 + d*d*float64(s.n)*float64(o.n)/float64(n)
	s.n = n
	s.min = math.Min(s.min, o.min)
	s.max = math.Max(s.max, o.max)
	s.last = o.last
}

func (s *stats) value(a aggregate) float64 {
	switch a {
	case aggAvg:
		return s.mean
	case aggMin:
		return s.min
	case aggMax:
		return s.max
	case aggCount:
		return float64(s.n)
	case aggStddev:
		return stddev(s.m2, s.n)
	}
	return s.last
}

// stddev is the population standard deviation.
func stddev(m2 float64, n int64) float64 {
	if n == 0 || m2 <= 0 {
		return 0
	}
	return math.Sqrt(m2 / float64(n))
}

// timeWin holds the panes of a tumbling or hopping window for one sensor.
// A pane is one step long; a window is panes() consecutive panes and closes
// at a multiple of step. Readings arrive in event-time order (the reorder
// buffer sees to that), so only the panes of still-open windows are kept,
// in a ring indexed by pane number.
type timeWin struct {
	panes    []pane
	started  bool
	next     int64 // pane number j of the next window to close (it ends at (j+1)*step)
	lastData int64 // pane number of the latest pane with data
}

type pane struct {
	idx int64 // pane number; the slot is stale if it is not the wanted one
	stats
}

func newTimeWin(r *rule) *timeWin {
	w := &timeWin{panes: make([]pane, r.panes())}
	for i := range w.panes {
		w.panes[i].idx = -1
	}
	return w
}

// add folds a reading in pane p.
func (w *timeWin) add(p int64, v float64) {
	if !w.started {
		w.started = true
		w.next = p
	}
	sl := &w.panes[p%int64(len(w.panes))]
	if sl.idx != p {
		sl.idx = p
		sl.reset()
	}
	sl.add(v)
	w.lastData = p
}

// window merges the panes of the window ending at pane j.
func (w *timeWin) window(j int64) stats {
	k := int64(len(w.panes))
	var s stats
	s.reset()
	for q := max(j-k+1, 0); q <= min(j, w.lastData); q++ { // later panes are empty
		if sl := &w.panes[q%k]; sl.idx == q {
			s.merge(&sl.stats)
		}
	}
	return s
}

// countWin is a ring of the last n readings with running mean and M2 and,
// when the rule needs them, monotonic deques for min and max.
type countWin struct {
	vals  []float64
	times []int64
	seq   int64 // readings pushed so far; reading s is in slot s % len(vals)
	size  int64 // readings in the ring, ≤ len(vals)
	mean  float64
	m2    float64
	repl  int64 // replacements since the last exact recompute
	minq  deque
	maxq  deque
}

func newCountWin(r *rule) *countWin {
	w := &countWin{vals: make([]float64, r.count), times: make([]int64, r.count)}
	switch r.agg {
	case aggMin:
		w.minq.q = make([]int64, r.count)
	case aggMax:
		w.maxq.q = make([]int64, r.count)
	}
	return w
}

// oldest is the time of the oldest reading in the ring.
func (w *countWin) oldest() int64 {
	n := int64(len(w.vals))
	return w.times[(w.seq-w.size)%n]
}

func (w *countWin) push(t int64, v float64) {
	n := int64(len(w.vals))
	s := w.seq
	i := s % n
	if w.size == n {
		// Slide: v replaces the oldest value y, n unchanged.
		y := w.vals[i]
		m0 := w.mean
		w.mean += (v - y) / float64(n)
		w.m2 += (v - y) * (v - w.mean + y - m0)
		w.repl++
	} else {
		w.size++
		d := v - w.mean
		w.mean += d / float64(w.size)
		w.m2 += d * (v - w.mean)
	}
	if w.minq.q != nil {
		w.minq.push(s, w.vals, v, false)
	}
	if w.maxq.q != nil {
		w.maxq.push(s, w.vals, v, true)
	}
	w.vals[i] = v
	w.times[i] = t
	w.seq++
	if w.repl >= n {
		w.recompute() // bound the drift of the sliding update
	}
	if w.m2 < 0 {
		w.m2 = 0
	}
}

// recompute sets mean and m2 exactly from the ring (two passes).
func (w *countWin) recompute() {
	w.repl = 0
	var sum float64
	for _, v := range w.vals[:w.size] {
		sum += v
	}
	mean := sum / float64(w.size)
	var m2 float64
	for _, v := range w.vals[:w.size] {
		d := v - mean
		m2 += d * d
	}
	w.mean, w.m2 = mean, m2
}

func (w *countWin) value(a aggregate) float64 {
	n := int64(len(w.vals))
	switch a {
	case aggAvg:
		return w.mean
	case aggMin:
		return w.vals[w.minq.front()%n]
	case aggMax:
		return w.vals[w.maxq.front()%n]
	case aggCount:
		return float64(w.size)
	case aggStddev:
		return stddev(w.m2, w.size)
	}
	return w.vals[(w.seq-1)%n]
}

// deque is a ring of reading sequence numbers whose values are monotonic,
// for the min or max of a sliding count window in O(1) amortised.
type deque struct {
	q    []int64
	h, l int
}

func (d *deque) front() int64 { return d.q[d.h] }

// push adds reading s with value v to a window over the ring vals (before v
// is stored in it): it drops readings that have left the window and those
// that v dominates (can never again be the extreme while v is in).
func (d *deque) push(s int64, vals []float64, v float64, isMax bool) {
	c := len(d.q)
	n := int64(len(vals))
	for d.l > 0 && d.q[d.h] <= s-n {
		d.h = (d.h + 1) % c
		d.l--
	}
	for d.l > 0 {
		b := vals[d.q[(d.h+d.l-1)%c]%n]
		if isMax && b > v || !isMax && b < v {
			break
		}
		d.l--
	}
	d.q[(d.h+d.l)%c] = s
	d.l++
}

// reorder is the buffer that puts readings back in event-time order before
// they are judged. It is a slice sorted by time (stable for equal times),
// consumed from head.
type reorder struct {
	buf  []tv
	head int
}

type tv struct {
	t int64
	v float64
}

func (q *reorder) len() int { return len(q.buf) - q.head }

func (q *reorder) insert(t int64, v float64) {
	if len(q.buf) == cap(q.buf) && q.head > 0 && q.head >= q.len() {
		n := copy(q.buf, q.buf[q.head:])
		q.buf = q.buf[:n]
		q.head = 0
	}
	i := len(q.buf)
	for i > q.head && q.buf[i-1].t > t {
		i--
	}
	q.buf = append(q.buf, tv{})
	copy(q.buf[i+1:], q.buf[i:])
	q.buf[i] = tv{t, v}
}

func (q *reorder) front() tv { return q.buf[q.head] }

func (q *reorder) pop() {
	q.head++
	if q.head == len(q.buf) {
		q.buf = q.buf[:0]
		q.head = 0
	}
}
