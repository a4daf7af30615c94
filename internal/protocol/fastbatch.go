package protocol

import (
	"strconv"
	"unicode/utf8"
)

// decodeBatchFast decodes the batches gateways send (readings, in the
// shape json.Marshal gives them) without reflection. It reports false for
// anything else: another field, an alert or fault, escapes, null, duplicate
// keys, numbers out of range, trailing data, bad JSON. The caller then
// decodes with encoding/json, which alone produces errors; whenever this
// accepts, encoding/json gives the same Batch (FuzzDecodeBatchFast).
func decodeBatchFast(b []byte) (Batch, bool) {
	p := fastParser{b: b}
	var bt Batch
	if !p.byte('{') {
		return Batch{}, false
	}
	var seen uint8
	for first := true; ; first = false {
		if p.byte('}') {
			break
		}
		if !first && !p.byte(',') {
			return Batch{}, false
		}
		key, ok := p.key()
		if !ok {
			return Batch{}, false
		}
		switch key {
		case "v":
			v, ok := p.int()
			if !ok || seen&1 != 0 || int64(int(v)) != v {
				return Batch{}, false
			}
			bt.V, seen = int(v), seen|1
		case "records":
			if seen&2 != 0 || !p.records(&bt) {
				return Batch{}, false
			}
			seen |= 2
		default:
			return Batch{}, false
		}
	}
	p.space()
	return bt, p.i == len(p.b)
}

type fastParser struct {
	b []byte
	i int
}

func (p *fastParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// byte consumes c (after whitespace) if it comes next.
func (p *fastParser) byte(c byte) bool {
	p.space()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// key reads `"name":`.
func (p *fastParser) key() (string, bool) {
	k, ok := p.str()
	return k, ok && p.byte(':')
}

// str reads a string without escapes or control characters, valid UTF-8.
func (p *fastParser) str() (string, bool) {
	s, ok := p.raw()
	return string(s), ok
}

// raw is str's bytes, aliasing the input.
func (p *fastParser) raw() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	start := p.i
	ascii := true
	for ; p.i < len(p.b); p.i++ {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			if !ascii && !utf8.Valid(s) {
				return nil, false
			}
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, false
}

// number reads a JSON number's text; integer reports that it has no
// fraction or exponent.
func (p *fastParser) number() (lit []byte, integer, ok bool) {
	p.space()
	start := p.i
	if p.i < len(p.b) && p.b[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(p.b) && p.b[p.i] == '0':
		p.i++
	case p.digits() == 0:
		return nil, false, false
	}
	integer = true
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if p.digits() == 0 {
			return nil, false, false
		}
		integer = false
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if p.digits() == 0 {
			return nil, false, false
		}
		integer = false
	}
	return p.b[start:p.i], integer, true
}

func (p *fastParser) digits() int {
	n := 0
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
		n++
	}
	return n
}

func (p *fastParser) int() (int64, bool) {
	lit, integer, ok := p.number()
	if !ok || !integer {
		return 0, false
	}
	v, err := strconv.ParseInt(string(lit), 10, 64)
	return v, err == nil
}

func (p *fastParser) uint() (uint64, bool) {
	lit, integer, ok := p.number()
	if !ok || !integer || lit[0] == '-' {
		return 0, false
	}
	v, err := strconv.ParseUint(string(lit), 10, 64)
	return v, err == nil
}

func (p *fastParser) float() (float64, bool) {
	lit, _, ok := p.number()
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(string(lit), 64)
	return v, err == nil
}

func (p *fastParser) records(bt *Batch) bool {
	if !p.byte('[') {
		return false
	}
	bt.Records = []Record{} // encoding/json makes an empty array non-nil
	for first := true; ; first = false {
		if p.byte(']') {
			return true
		}
		if !first && !p.byte(',') {
			return false
		}
		if len(bt.Records) >= MaxBatch {
			return false // too many: encoding/json decodes, Validate explains
		}
		bt.Records = append(bt.Records, Record{})
		if !p.record(&bt.Records[len(bt.Records)-1]) {
			return false
		}
	}
}

// Record fields the fast path reads, as bits for duplicate detection.
const (
	fSeq = 1 << iota
	fKind
	fTime
	fClock
	fBoot
	fMono
	fSensor
	fValue
	fUnit
)

func (p *fastParser) record(r *Record) bool {
	if !p.byte('{') {
		return false
	}
	var seen uint16
	for first := true; ; first = false {
		if p.byte('}') {
			return true
		}
		if !first && !p.byte(',') {
			return false
		}
		key, ok := p.key()
		if !ok {
			return false
		}
		var bit uint16
		switch key {
		case "seq":
			bit = fSeq
			r.Seq, ok = p.uint()
		case "kind":
			bit = fKind
			var k []byte
			if k, ok = p.raw(); string(k) == KindReading {
				r.Kind = KindReading // the constant: one allocation less
			} else {
				r.Kind = string(k)
			}
		case "t":
			bit = fTime
			r.Time, ok = p.int()
		case "clock":
			bit = fClock
			r.Clock, ok = p.str()
		case "boot":
			bit = fBoot
			r.Boot, ok = p.str()
		case "mono":
			bit = fMono
			r.MonoMS, ok = p.int()
		case "sensor":
			bit = fSensor
			r.Sensor, ok = p.str()
		case "value":
			bit = fValue
			var v float64
			if v, ok = p.float(); ok {
				r.Value = &v
			}
		case "unit":
			bit = fUnit
			r.Unit, ok = p.str()
		default:
			return false
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
	}
}
