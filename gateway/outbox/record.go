package outbox

import (
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/outpost-iot/outpost/internal/protocol"
)

// Stored kinds (column records.kind). A reading is 0: SQLite stores the
// integers 0 and 1 in the record header alone, without payload bytes.
const (
	kindReading int64 = 0
	kindAlert   int64 = 1
	kindFault   int64 = 2
)

func kindCode(k string) (int64, error) {
	switch k {
	case protocol.KindReading:
		return kindReading, nil
	case protocol.KindAlert:
		return kindAlert, nil
	case protocol.KindFault:
		return kindFault, nil
	}
	return 0, fmt.Errorf("unknown kind %q", k)
}

func kindName(c int64) (string, error) {
	switch c {
	case kindReading:
		return protocol.KindReading, nil
	case kindAlert:
		return protocol.KindAlert, nil
	case kindFault:
		return protocol.KindFault, nil
	}
	return "", fmt.Errorf("unknown stored kind %d", c)
}

// extra holds the fields of a protocol.Record that have no column of their
// own, stored as compact JSON in records.body. A reading from a synchronised
// clock has none: its body is NULL.
type extra struct {
	Clock  string          `json:"c,omitempty"`
	Boot   string          `json:"b,omitempty"`
	MonoMS int64           `json:"m,omitempty"`
	Alert  *protocol.Alert `json:"a,omitempty"`
	Fault  *protocol.Fault `json:"f,omitempty"`
}

func (e *extra) empty() bool {
	return e.Clock == "" && e.Boot == "" && e.MonoMS == 0 && e.Alert == nil && e.Fault == nil
}

// rowOverhead is the per-record constant of the size estimate (Stats.Bytes):
// a reading from a synchronised clock takes about this much in its B-tree
// page (payload, cell header and pointer, page slack).
const rowOverhead = 32

// sizeSQL computes a stored row's size estimate; it must agree with row.size.
const sizeSQL = `(32 + ifnull(octet_length(body), 0))`

// seriesKey identifies a row of the series table.
type seriesKey struct{ sensor, unit string }

// row is a record as stored. It is built when the record is appended, so the
// buffer holds no pointers into the caller's data. A row is never modified
// once buffered (body included), so readers may copy it and share body.
type row struct {
	seq      uint64
	kind     int64
	t        int64
	series   seriesKey
	value    float64
	hasValue bool
	body     []byte
	added    int64 // unix ms
	// notice marks a DropNotice record: committing it marks the
	// unreported drops as reported.
	notice bool
}

func (r *row) size() int64 {
	return rowOverhead + int64(len(r.body))
}

// encode validates rec (as if it had a seq) and converts it to a row.
func encode(rec *protocol.Record) (row, error) {
	if rec.Seq != 0 {
		return row{}, fmt.Errorf("record already has seq %d: the outbox assigns it", rec.Seq)
	}
	v := *rec
	v.Seq = 1 // Validate wants one; the real number is assigned later
	if err := v.Validate(); err != nil {
		return row{}, err
	}
	k, err := kindCode(rec.Kind)
	if err != nil {
		return row{}, err
	}
	r := row{kind: k, t: rec.Time, series: seriesKey{rec.Sensor, rec.Unit}}
	if rec.Value != nil {
		r.value, r.hasValue = *rec.Value, true
	}
	e := extra{Clock: rec.Clock, Boot: rec.Boot, MonoMS: rec.MonoMS, Alert: rec.Alert, Fault: rec.Fault}
	if !e.empty() {
		if r.body, err = json.Marshal(&e); err != nil {
			return row{}, fmt.Errorf("encode record body: %w", err)
		}
	}
	return r, nil
}

// args returns the row's values for insertSQL, with its series id.
func (r *row) args(series int64) []any {
	var value, body any
	if r.hasValue {
		value = r.value
	}
	if len(r.body) > 0 {
		body = r.body
	}
	return []any{int64(r.seq), r.kind, r.t, series, value, body, r.added - r.t}
}

const insertSQL = `INSERT INTO records (seq, kind, t, series, value, body, lag) VALUES (?, ?, ?, ?, ?, ?, ?)`

// selectRecords selects the columns scanRecord reads; append WHERE etc.
const selectRecords = `SELECT r.seq, r.kind, r.t, s.sensor, r.value, s.unit, r.body FROM records r JOIN series s ON s.id = r.series `

// scanRecord decodes one row selected with selectRecords.
func scanRecord(rows *sql.Rows) (protocol.Record, error) {
	var (
		seq, kind, t int64
		sensor       string
		value        sql.NullFloat64
		unit         string
		body         []byte
	)
	if err := rows.Scan(&seq, &kind, &t, &sensor, &value, &unit, &body); err != nil {
		return protocol.Record{}, err
	}
	var v *float64
	if value.Valid {
		v = &value.Float64
	}
	return decode(uint64(seq), kind, t, sensor, unit, v, body)
}

// record converts a buffered row back to the record it was built from,
// exactly as scanRecord returns it once stored: a record published from the
// buffer and published again from the table after a restart is the same.
func (r *row) record() (protocol.Record, error) {
	var v *float64
	if r.hasValue {
		v = &r.value
	}
	return decode(r.seq, r.kind, r.t, r.series.sensor, r.series.unit, v, r.body)
}

// decode builds a record from its stored fields.
func decode(seq uint64, kind, t int64, sensor, unit string, value *float64, body []byte) (protocol.Record, error) {
	name, err := kindName(kind)
	if err != nil {
		return protocol.Record{}, fmt.Errorf("seq %d: %w", seq, err)
	}
	rec := protocol.Record{Seq: seq, Kind: name, Time: t, Sensor: sensor, Unit: unit}
	if value != nil {
		v := *value
		rec.Value = &v
	}
	if len(body) > 0 {
		var e extra
		if err := json.Unmarshal(body, &e); err != nil {
			return protocol.Record{}, fmt.Errorf("seq %d: decode body: %w", seq, err)
		}
		rec.Clock, rec.Boot, rec.MonoMS, rec.Alert, rec.Fault = e.Clock, e.Boot, e.MonoMS, e.Alert, e.Fault
	}
	return rec, nil
}
