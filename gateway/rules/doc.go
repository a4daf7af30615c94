// Package rules is the gateway's alert-rule engine: windows, aggregates and
// alert state machines evaluated in event time. It is pure: no I/O, no
// goroutines, no wall clock. Time enters only with each Reading and with
// Advance.
//
// # Rules
//
// A Config (decoded from YAML, see ParseConfig and testdata/classic.yaml)
// holds rules. Each rule selects sensors by name or glob, and every selected
// sensor gets its own state. A rule judges a value and compares it with its
// raise condition ("< 10", ">= 5.5"):
//
//   - kind threshold, no window: each reading.
//   - kind threshold with a window and an aggregate (avg, min, max, last,
//     count, stddev): a tumbling window (size), a hopping window (size and
//     step; size a multiple of step) or a count window (the last count
//     readings, judged on every reading once min_samples are in).
//     Time windows are aligned to the Unix epoch, are half-open [start, end)
//     and are judged when they close, at event time end. An empty window is
//     not judged, except by count (which judges the first empty window of a
//     silence as 0). A sensor's first windows may begin before its first
//     reading; min_samples keeps thin windows from being judged.
//   - kind rate: the change between consecutive readings, per reading or
//     per second; direction any (|change|), up (change) or down (-change).
//   - kind zscore: |x - mean| / stddev of the trailing count window of
//     readings before x, judged once min_samples readings are in. The
//     standard deviation is the population one, floored at min_stddev; with
//     no spread and no floor a reading is not judged.
//
// # Alerts
//
// Per rule and sensor an alert is either active or not. It is raised when the
// raise condition has held continuously for `for` (at once when for is 0),
// and cleared by the first judgement for which the clear condition holds.
// The clear condition defaults to "not raise"; an explicit one must leave a
// gap (raise "< 10", clear "> 10.5"), which is what keeps an alert from
// flapping around its threshold. An active alert is never raised again
// before it clears; every clear follows a raise.
//
// A judged value is taken to hold until the next judgement (step
// semantics). So a `for` timer fires at since+for as soon as event time has
// passed that instant without a contrary judgement, whether event time moved
// on through a reading or through Advance; the raised event carries event
// time since+for. A judgement at exactly since+for decides for itself.
//
// # Event time, lateness and watermarks
//
// Each (rule, sensor) has a watermark: the latest event time it has seen in
// a reading of that sensor or in Advance. Advance(now) is a promise for all
// sensors, also silent ones: it is how windows close and timers fire when
// readings stop. The rule's allowed lateness L (Config.Lateness, or the
// rule's own) is how far behind the watermark a reading may be:
//
//   - a reading with event time t < watermark - L is late: it is counted in
//     Stats.Late and not folded into anything;
//   - otherwise it waits in a small reorder buffer until the watermark
//     reaches t + L, and is then judged in event-time order (equal times in
//     arrival order). Windows therefore close when the watermark passes
//     end + L, and out-of-order readings land in the right window, the right
//     place of a count window, and the right pair of a rate rule.
//
// With L = 0 (the default) nothing is buffered: readings must come in
// non-decreasing time order per sensor and are judged at once; L > 0 delays
// every judgement of the rule by L in exchange for tolerating disorder. The
// reorder buffer holds at most 16384 readings per rule and sensor; beyond
// that the oldest is judged early and anything older is then late.
//
// Given the same readings that are not late, the events are the same
// whatever the Advance calls in between: Advance changes when a transition
// is reported, not what it is or its event time.
//
// # Input checks
//
// A reading is invalid (counted in Stats.Invalid, otherwise ignored) when its
// sensor name is empty or longer than protocol.MaxSensorNameLen, its value
// is NaN, infinite or beyond MaxAbsValue, or its time is not between the Unix
// epoch and 2200. Readings of sensors no rule selects count as Unmatched;
// once Config.MaxSensors sensors are known, readings of new ones count as
// Overflow.
//
// # Memory
//
// State is per rule and sensor and bounded by the configuration: a count
// window or zscore keeps count readings (at most 10000), a hopping window
// size/step panes (at most 1024) of 64 bytes, a tumbling window one, plus
// the reorder buffer when lateness is set. Config.MaxSensors bounds the
// number of sensors.
//
// # Allocation
//
// Observe and Advance append to a caller's slice and allocate only when a
// sensor is first seen, when a reorder buffer grows, and when an alert changes
// state (the event's message is rendered then). Steady state is zero
// allocations per reading.
//
// # Persistence
//
// Snapshot holds the active alerts only. Restore puts them back into a new
// engine so that a restart neither raises them again nor leaves them open:
// they clear by their rule as usual, and an alert whose rule is gone is
// cleared at once. Windows, reorder buffers, pending `for` timers and
// watermarks start empty; to rebuild windows, replay recent readings after
// Restore (readings older than a restored alert's raise time are late for
// it).
package rules
