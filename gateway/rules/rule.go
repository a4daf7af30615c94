package rules

// rule is a compiled, validated RuleSpec. It is immutable once built and
// shared by the states of every sensor it selects.
type rule struct {
	name    string
	sensors Selector

	kind kind
	win  winType
	agg  aggregate

	size, step int64 // time windows, ns; step == size for tumbling
	count      int   // count windows and zscore

	minSamples int
	minStddev  float64
	perSecond  bool
	direction  direction

	raise, clear cond
	forDur       int64 // ns
	lateness     int64 // ns

	severity string
	labels   map[string]string // shared read-only with every Event
	window   string            // description, e.g. "avg 1m tumbling"
	msg      template
	clearMsg template

	trace func(sensor string, o obs) // tests: sees every judgement
}

// panes is the number of step-long panes in one window.
func (r *rule) panes() int64 { return r.size / r.step }

type kind uint8

const (
	kindInvalid kind = iota
	kindThreshold
	kindRate
	kindZScore
)

type winType uint8

const (
	winInvalid winType = iota
	winNone
	winTumbling
	winHopping
	winCount
)

type aggregate uint8

const (
	aggLast aggregate = iota
	aggAvg
	aggMin
	aggMax
	aggCount
	aggStddev
)

var aggNames = [...]string{aggLast: "last", aggAvg: "avg", aggMin: "min", aggMax: "max", aggCount: "count", aggStddev: "stddev"}

func (a aggregate) String() string { return aggNames[a] }

type direction uint8

const (
	dirAny direction = iota
	dirUp
	dirDown
)
