package ota

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/outpost-iot/outpost/firmware-ota/manifest"
	"github.com/outpost-iot/outpost/hub/api"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// Rollout states.
const (
	RolloutActive    = "active"    // waves advance as devices finish
	RolloutPaused    = "paused"    // by an operator or by failures over the limit; no new wave starts
	RolloutCompleted = "completed" // every device finished (succeeded, or failed within the limit)
	RolloutAborted   = "aborted"   // by an operator; notices withdrawn
)

// DevicePending is the state of a device whose wave has not started; the
// other device states are the OTA states of internal/protocol, "notified"
// meaning the hub published the notice (or the device confirmed it).
const DevicePending = "pending"

// MaxRolloutDevices bounds the devices of one rollout.
const MaxRolloutDevices = 100_000

func terminal(state string) bool {
	return state == protocol.OTASucceeded || state == protocol.OTAFailed || state == protocol.OTARolledBack
}

func failure(state string) bool {
	return state == protocol.OTAFailed || state == protocol.OTARolledBack
}

// RolloutRequest is the body of POST /api/v1/ota/rollouts. Give Devices or
// Selector.
type RolloutRequest struct {
	Release        string   `json:"release"`          // version
	Target         string   `json:"target,omitempty"` // needed when the version exists for several targets
	Devices        []string `json:"devices,omitempty"`
	Selector       string   `json:"selector,omitempty"` // label=value[,label=value…] over device labels
	Waves          []string `json:"waves,omitempty"`    // cumulative; default ["100%"]
	MaxFailures    *Limit   `json:"max_failures,omitempty"`
	AllowDowngrade bool     `json:"allow_downgrade,omitempty"`
}

// Rollout is a rollout as the API shows it.
type Rollout struct {
	ID               string         `json:"id"`
	Release          string         `json:"release"`
	Target           string         `json:"target"`
	SHA256           string         `json:"sha256"`
	State            string         `json:"state"`
	Reason           string         `json:"reason,omitempty"`
	Selector         string         `json:"selector,omitempty"`
	CurrentWave      int            `json:"current_wave"` // 1-based: the last wave started
	Waves            []Wave         `json:"waves"`
	MaxFailures      string         `json:"max_failures"`
	AcceptedFailures int            `json:"accepted_failures,omitempty"` // accepted by resuming
	AllowDowngrade   bool           `json:"allow_downgrade,omitempty"`
	Total            int            `json:"total"`
	Succeeded        int            `json:"succeeded"`
	Failures         int            `json:"failures"` // failed + rolled_back
	Progress         float64        `json:"progress"` // percent of devices finished
	Counts           map[string]int `json:"counts"`   // devices per state
	CreatedMS        int64          `json:"created"`
	UpdatedMS        int64          `json:"updated"`
	FinishedMS       int64          `json:"finished,omitempty"`
	Devices          []DeviceStatus `json:"devices,omitempty"`
}

// Wave is one wave of a rollout.
type Wave struct {
	Wave    int    `json:"wave"`
	Size    string `json:"size"` // cumulative, as given: "25%" or a count
	Devices int    `json:"devices"`
	Started bool   `json:"started"`
	Done    int    `json:"done"` // devices that finished
}

// DeviceStatus is one device's state in a rollout.
type DeviceStatus struct {
	Device     string `json:"device"`
	Wave       int    `json:"wave"`
	State      string `json:"state"`
	Bytes      int64  `json:"bytes,omitempty"`
	Total      int64  `json:"total,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Firmware   string `json:"fw,omitempty"`
	NotifiedMS int64  `json:"notified,omitempty"`
	UpdatedMS  int64  `json:"updated,omitempty"`
}

// rollout is a rollout as loaded for reconciling.
type rollout struct {
	id, sha, version, target, state, reason, selector string
	waves                                             []string
	wave                                              int
	limit                                             Limit
	accepted                                          int
	allowDowngrade                                    bool
	created, updated, finished                        int64
	devices                                           []DeviceStatus
}

type queryer interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

const rolloutCols = `r.id, r.sha256, r.version, l.target, r.state, r.reason, r.selector, r.waves, r.wave, r.max_failures,
	r.accepted_failures, r.allow_downgrade, r.created_ms, r.updated_ms, r.finished_ms`

func scanRollout(sc interface{ Scan(...any) error }) (*rollout, error) {
	r := &rollout{}
	var waves, limit string
	err := sc.Scan(&r.id, &r.sha, &r.version, &r.target, &r.state, &r.reason, &r.selector, &waves, &r.wave, &limit,
		&r.accepted, &r.allowDowngrade, &r.created, &r.updated, &r.finished)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(waves), &r.waves); err != nil {
		return nil, fmt.Errorf("rollout %s: waves %q: %w", r.id, waves, err)
	}
	if r.limit, err = ParseLimit(limit); err != nil {
		return nil, fmt.Errorf("rollout %s: %w", r.id, err)
	}
	return r, nil
}

func loadRollout(ctx context.Context, q queryer, id string, withDevices bool) (*rollout, error) {
	r, err := scanRollout(q.QueryRowContext(ctx, `SELECT `+rolloutCols+` FROM ota_rollouts r JOIN ota_releases l ON l.sha256 = r.sha256 WHERE r.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: no rollout %q", ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("ota: rollout: %w", err)
	}
	if !withDevices {
		return r, nil
	}
	rows, err := q.QueryContext(ctx, `SELECT device, wave, state, bytes, total, reason, fw, notified_ms, updated_ms
		FROM ota_rollout_devices WHERE rollout = ? ORDER BY wave, device`, id)
	if err != nil {
		return nil, fmt.Errorf("ota: rollout devices: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var d DeviceStatus
		if err := rows.Scan(&d.Device, &d.Wave, &d.State, &d.Bytes, &d.Total, &d.Reason, &d.Firmware, &d.NotifiedMS, &d.UpdatedMS); err != nil {
			return nil, fmt.Errorf("ota: rollout devices: %w", err)
		}
		r.devices = append(r.devices, d)
	}
	return r, rows.Err()
}

// tally counts the devices notified so far (in started waves), the
// failures, and the finished devices of started waves.
func (r *rollout) tally() (started, failures, done int) {
	for _, d := range r.devices {
		if d.Wave <= r.wave {
			started++
			if terminal(d.State) {
				done++
			}
		}
		if failure(d.State) {
			failures++
		}
	}
	return started, failures, done
}

// advance moves an active rollout on: it pauses it when failures pass the
// limit, starts the next wave when every device of the started ones
// finished, and completes it after the last. It reports a change.
func (r *rollout) advance(now int64) bool {
	changed := false
	for {
		started, failures, done := r.tally()
		if over := failures - r.accepted; r.limit.Exceeded(over, started) {
			r.state = RolloutPaused
			r.reason = fmt.Sprintf("paused automatically: %d of %d notified devices failed (%d accepted before), over max_failures %s",
				failures, started, r.accepted, r.limit)
			return true
		}
		if done < started {
			return changed
		}
		if r.wave < len(r.waves) {
			r.wave++
			changed = true
			continue
		}
		r.state = RolloutCompleted
		r.finished = now
		r.reason = fmt.Sprintf("%d of %d succeeded, %d failed", len(r.devices)-failures, len(r.devices), failures)
		return true
	}
}

// wantsNotice reports whether the broker should hold d's retained notice:
// its wave started, it has not finished, and the rollout is active — or
// paused with d already past "notified" (a pause withdraws the notices of
// devices that have not begun, and keeps those in flight).
func (r *rollout) wantsNotice(d DeviceStatus) bool {
	if d.Wave > r.wave || terminal(d.State) {
		return false
	}
	switch r.state {
	case RolloutActive:
		return true
	case RolloutPaused:
		return d.State != DevicePending && d.State != protocol.OTANotified
	}
	return false
}

func (r *rollout) view(withDevices bool) Rollout {
	v := Rollout{ID: r.id, Release: r.version, Target: r.target, SHA256: r.sha, State: r.state, Reason: r.reason,
		Selector: r.selector, CurrentWave: r.wave, MaxFailures: r.limit.String(), AcceptedFailures: r.accepted,
		AllowDowngrade: r.allowDowngrade, Total: len(r.devices), Counts: map[string]int{},
		CreatedMS: r.created, UpdatedMS: r.updated, FinishedMS: r.finished}
	for i, w := range r.waves {
		v.Waves = append(v.Waves, Wave{Wave: i + 1, Size: w, Started: i+1 <= r.wave})
	}
	done := 0
	for _, d := range r.devices {
		v.Counts[d.State]++
		if d.Wave >= 1 && d.Wave <= len(v.Waves) {
			v.Waves[d.Wave-1].Devices++
			if terminal(d.State) {
				v.Waves[d.Wave-1].Done++
			}
		}
		switch {
		case d.State == protocol.OTASucceeded:
			v.Succeeded++
		case failure(d.State):
			v.Failures++
		}
		if terminal(d.State) {
			done++
		}
	}
	if len(r.devices) > 0 {
		v.Progress = float64(done) * 100 / float64(len(r.devices))
	}
	if withDevices {
		v.Devices = r.devices
	}
	return v
}

// Rollout returns one rollout with its devices.
func (s *Service) Rollout(ctx context.Context, id string) (Rollout, error) {
	r, err := loadRollout(ctx, s.db, id, true)
	if err != nil {
		return Rollout{}, err
	}
	return r.view(true), nil
}

// Rollouts lists rollouts, newest first, without their devices.
func (s *Service) Rollouts(ctx context.Context, state string, limit int) ([]Rollout, error) {
	q := `SELECT ` + rolloutCols + ` FROM ota_rollouts r JOIN ota_releases l ON l.sha256 = r.sha256`
	args := []any{}
	if state != "" {
		q += ` WHERE r.state = ?`
		args = append(args, state)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY r.created_ms DESC, r.id LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("ota: rollouts: %w", err)
	}
	var rs []*rollout
	for rows.Next() {
		r, err := scanRollout(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("ota: rollouts: %w", err)
		}
		rs = append(rs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ota: rollouts: %w", err)
	}
	out := make([]Rollout, 0, len(rs))
	for _, r := range rs {
		// Per-state counts without loading every device row.
		crows, err := s.db.QueryContext(ctx, `SELECT wave, state, count(*) FROM ota_rollout_devices WHERE rollout = ? GROUP BY wave, state`, r.id)
		if err != nil {
			return nil, fmt.Errorf("ota: rollouts: %w", err)
		}
		for crows.Next() {
			var d DeviceStatus
			var n int
			if err := crows.Scan(&d.Wave, &d.State, &n); err != nil {
				crows.Close()
				return nil, fmt.Errorf("ota: rollouts: %w", err)
			}
			for range n {
				r.devices = append(r.devices, d)
			}
		}
		crows.Close()
		out = append(out, r.view(false))
	}
	return out, nil
}

func (s *Service) listRollouts(w http.ResponseWriter, r *http.Request) error {
	state := r.URL.Query().Get("state")
	switch state {
	case "", RolloutActive, RolloutPaused, RolloutCompleted, RolloutAborted:
	default:
		return fmt.Errorf("%w: state %q (want active, paused, completed or aborted)", api.ErrBadRequest, state)
	}
	rs, err := s.Rollouts(r.Context(), state, 1000)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"rollouts": rs})
	return nil
}

func (s *Service) getRollout(w http.ResponseWriter, r *http.Request) error {
	ro, err := s.Rollout(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, ro)
	return nil
}

func (s *Service) createRollout(w http.ResponseWriter, r *http.Request) error {
	var req RolloutRequest
	if err := decodeBody(r, &req, false); err != nil {
		return err
	}
	ro, err := s.CreateRollout(r.Context(), req)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusCreated, ro)
	return nil
}

func (s *Service) rolloutAction(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var err error
	switch a := r.PathValue("action"); a {
	case "pause":
		err = s.Pause(r.Context(), id)
	case "resume":
		err = s.Resume(r.Context(), id)
	case "abort":
		err = s.Abort(r.Context(), id)
	default:
		return fmt.Errorf("%w: action %q (want pause, resume or abort)", ErrNotFound, a)
	}
	if err != nil {
		return err
	}
	ro, err := s.Rollout(r.Context(), id)
	if err != nil {
		return err
	}
	api.WriteJSON(w, http.StatusOK, ro)
	return nil
}

// CreateRollout validates req, stores the rollout with each device's wave
// and publishes the first wave's notices.
func (s *Service) CreateRollout(ctx context.Context, req RolloutRequest) (Rollout, error) {
	waves, err := parseWaves(req.Waves)
	if err != nil {
		return Rollout{}, fmt.Errorf("%w: %v", api.ErrBadRequest, err)
	}
	limit := Limit{}
	if req.MaxFailures != nil {
		limit = *req.MaxFailures
	}
	rel, err := s.findRelease(ctx, req.Release, req.Target)
	if err != nil {
		return Rollout{}, err
	}
	devices, err := s.resolveDevices(ctx, req)
	if err != nil {
		return Rollout{}, err
	}
	id, err := newRolloutID()
	if err != nil {
		return Rollout{}, err
	}
	assign := assignWaves(id, devices, waves)
	now := s.now().UnixMilli()
	if err := s.insertRollout(ctx, id, rel, req, limit, devices, assign, now); err != nil {
		return Rollout{}, err
	}
	s.log.Info("ota: rollout created", "rollout", id, "release", rel.Version, "target", rel.Target, "devices", len(devices),
		"waves", strings.Join(req.wavesOrDefault(), ","), "max_failures", limit.String())
	if err := s.reconcile(ctx, id); err != nil {
		// Stored: Run retries the notices.
		s.log.Error("ota: first wave not published yet; retrying", "rollout", id, "err", err)
		s.markDirty(id)
	}
	return s.Rollout(ctx, id)
}

func (q RolloutRequest) wavesOrDefault() []string {
	if len(q.Waves) == 0 {
		return []string{"100%"}
	}
	out := make([]string, len(q.Waves))
	for i, w := range q.Waves {
		out[i] = strings.TrimSpace(w)
	}
	return out
}

func newRolloutID() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("ota: rollout id: %w", err)
	}
	return "r-" + hex.EncodeToString(b[:]), nil
}

// insertRollout stores a rollout and its devices. It is one immediate
// transaction (the DSN's _txlock): the conflict checks and the inserts see
// and write one state, even beside the store's writer (busy_timeout makes
// each wait for the other's commit).
func (s *Service) insertRollout(ctx context.Context, id string, rel Release, req RolloutRequest, limit Limit,
	devices []string, assign map[string]int, now int64) error {
	wavesJSON, err := json.Marshal(req.wavesOrDefault())
	if err != nil {
		return fmt.Errorf("ota: create rollout: %w", err)
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("ota: create rollout: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // no-op after Commit
	if err := checkBusy(ctx, tx, devices); err != nil {
		return err
	}
	if !req.AllowDowngrade {
		if err := checkDowngrade(ctx, tx, devices, rel.Version); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO ota_rollouts(id, sha256, version, state, waves, wave, max_failures, allow_downgrade, selector, created_ms, updated_ms)
		VALUES(?,?,?,?,?,1,?,?,?,?,?)`, id, rel.SHA256, rel.Version, RolloutActive, string(wavesJSON), limit.String(), req.AllowDowngrade, req.Selector, now, now); err != nil {
		return fmt.Errorf("ota: create rollout: %w", err)
	}
	ins, err := tx.PrepareContext(ctx, `INSERT INTO ota_rollout_devices(rollout, device, wave) VALUES(?,?,?)`)
	if err != nil {
		return fmt.Errorf("ota: create rollout: %w", err)
	}
	defer func() { _ = ins.Close() }()
	for _, d := range devices {
		if _, err := ins.ExecContext(ctx, id, d, assign[d]); err != nil {
			return fmt.Errorf("ota: create rollout: device %s: %w", d, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("ota: create rollout: %w", err)
	}
	return nil
}

// findRelease finds the release a rollout names by version (and target).
func (s *Service) findRelease(ctx context.Context, version, target string) (Release, error) {
	v, err := manifest.ParseVersion(version)
	if err != nil {
		return Release{}, fmt.Errorf("%w: release: %v", api.ErrBadRequest, err)
	}
	q := `SELECT ` + releaseCols + ` FROM ota_releases WHERE version = ?`
	args := []any{v.String()}
	if target != "" {
		q += ` AND target = ?`
		args = append(args, target)
	}
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return Release{}, fmt.Errorf("ota: release: %w", err)
	}
	defer rows.Close()
	var found []Release
	for rows.Next() {
		r, err := scanRelease(rows)
		if err != nil {
			return Release{}, fmt.Errorf("ota: release: %w", err)
		}
		found = append(found, r)
	}
	if err := rows.Err(); err != nil {
		return Release{}, fmt.Errorf("ota: release: %w", err)
	}
	switch len(found) {
	case 0:
		what := v.String()
		if target != "" {
			what += " for " + target
		}
		return Release{}, fmt.Errorf("%w: release %s is not uploaded (outpostctl ota upload)", ErrUnprocessable, what)
	case 1:
		return found[0], nil
	}
	var ts []string
	for _, r := range found {
		ts = append(ts, r.Target)
	}
	return Release{}, fmt.Errorf("%w: release %s exists for %d targets (%s): give target", ErrUnprocessable, v, len(found), strings.Join(ts, "; "))
}

// resolveDevices returns the sorted, distinct devices a request targets.
func (s *Service) resolveDevices(ctx context.Context, req RolloutRequest) ([]string, error) {
	if (len(req.Devices) == 0) == (req.Selector == "") {
		return nil, fmt.Errorf("%w: give devices or selector (exactly one)", api.ErrBadRequest)
	}
	var out []string
	if len(req.Devices) > 0 {
		if len(req.Devices) > MaxRolloutDevices {
			return nil, fmt.Errorf("%w: %d devices, at most %d", api.ErrBadRequest, len(req.Devices), MaxRolloutDevices)
		}
		var bad []string
		for _, d := range req.Devices {
			if err := protocol.ValidateDeviceID(d); err != nil {
				bad = append(bad, err.Error())
			}
		}
		if len(bad) > 0 {
			return nil, fmt.Errorf("%w: devices: %s", api.ErrBadRequest, strings.Join(bad, "; "))
		}
		out = slices.Clone(req.Devices)
		slices.Sort(out)
		out = slices.Compact(out)
		known, err := s.knownDevices(ctx)
		if err != nil {
			return nil, err
		}
		var unknown []string
		for _, d := range out {
			if !known[d] {
				unknown = append(unknown, d)
			}
		}
		if len(unknown) > 0 {
			return nil, fmt.Errorf("%w: unknown devices (never connected, no labels, no token): %s", ErrUnprocessable, strings.Join(unknown, ", "))
		}
		return out, nil
	}
	sel, err := parseSelector(req.Selector)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", api.ErrBadRequest, err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT name, labels FROM devices ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("ota: devices: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, labels string
		if err := rows.Scan(&name, &labels); err != nil {
			return nil, fmt.Errorf("ota: devices: %w", err)
		}
		var ls map[string]string
		if json.Unmarshal([]byte(labels), &ls) != nil {
			continue
		}
		if sel.matches(ls) {
			out = append(out, name)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("ota: devices: %w", err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: selector %q matches no device (PUT /api/v1/devices/{id}/labels sets labels)", ErrUnprocessable, req.Selector)
	}
	if len(out) > MaxRolloutDevices {
		return nil, fmt.Errorf("%w: selector matches %d devices, at most %d", ErrUnprocessable, len(out), MaxRolloutDevices)
	}
	return out, nil
}

func (s *Service) knownDevices(ctx context.Context) (map[string]bool, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name FROM devices UNION SELECT device FROM tokens`)
	if err != nil {
		return nil, fmt.Errorf("ota: devices: %w", err)
	}
	defer rows.Close()
	known := map[string]bool{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("ota: devices: %w", err)
		}
		known[n] = true
	}
	return known, rows.Err()
}

type selector [][2]string

// parseSelector parses label=value[,label=value…] (all must match).
func parseSelector(s string) (selector, error) {
	var sel selector
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fmt.Errorf("selector %q: want label=value[,label=value…]", s)
		}
		sel = append(sel, [2]string{k, v})
	}
	return sel, nil
}

func (sel selector) matches(labels map[string]string) bool {
	for _, kv := range sel {
		if v, ok := labels[kv[0]]; !ok || v != kv[1] {
			return false
		}
	}
	return true
}

// checkBusy refuses devices that have not finished another unfinished
// rollout: a device has one notice topic.
func checkBusy(ctx context.Context, tx *sql.Tx, devices []string) error {
	want := make(map[string]bool, len(devices))
	for _, d := range devices {
		want[d] = true
	}
	rows, err := tx.QueryContext(ctx, `SELECT d.device, d.rollout FROM ota_rollout_devices d JOIN ota_rollouts r ON r.id = d.rollout
		WHERE r.state IN ('active','paused') AND d.state NOT IN ('succeeded','failed','rolled_back') ORDER BY d.device`)
	if err != nil {
		return fmt.Errorf("ota: busy devices: %w", err)
	}
	defer rows.Close()
	var busy []string
	for rows.Next() {
		var d, r string
		if err := rows.Scan(&d, &r); err != nil {
			return fmt.Errorf("ota: busy devices: %w", err)
		}
		if want[d] {
			busy = append(busy, d+" ("+r+")")
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("ota: busy devices: %w", err)
	}
	if len(busy) > 0 {
		if len(busy) > 20 {
			busy = append(busy[:20], fmt.Sprintf("… %d more", len(busy)-20))
		}
		return fmt.Errorf("%w: devices still in an unfinished rollout (abort it or wait): %s", api.ErrConflict, strings.Join(busy, ", "))
	}
	return nil
}

// checkDowngrade refuses devices whose reported firmware is newer than the
// release (the gateway refuses such a notice too, unless the rollout allows it).
func checkDowngrade(ctx context.Context, tx *sql.Tx, devices []string, version string) error {
	rv, err := manifest.ParseVersion(version)
	if err != nil {
		return fmt.Errorf("ota: release version: %w", err)
	}
	want := make(map[string]bool, len(devices))
	for _, d := range devices {
		want[d] = true
	}
	rows, err := tx.QueryContext(ctx, `SELECT name, firmware FROM devices WHERE firmware != '' ORDER BY name`)
	if err != nil {
		return fmt.Errorf("ota: device firmware: %w", err)
	}
	defer rows.Close()
	var newer []string
	for rows.Next() {
		var d, fw string
		if err := rows.Scan(&d, &fw); err != nil {
			return fmt.Errorf("ota: device firmware: %w", err)
		}
		if !want[d] {
			continue
		}
		if v, err := manifest.ParseVersion(strings.TrimPrefix(fw, "v")); err == nil && manifest.Compare(rv, v) < 0 {
			newer = append(newer, d+" runs "+fw)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("ota: device firmware: %w", err)
	}
	if len(newer) > 0 {
		return fmt.Errorf("%w: release %s would downgrade %s; set allow_downgrade to mean it", api.ErrConflict, version, strings.Join(newer, ", "))
	}
	return nil
}

// Pause stops a rollout's waves and withdraws the notices of devices that
// have not begun; devices in flight keep theirs. Pausing a paused rollout
// does nothing.
func (s *Service) Pause(ctx context.Context, id string) error {
	return s.transition(ctx, id, func(r *rollout) (bool, error) {
		switch r.state {
		case RolloutPaused:
			return false, nil
		case RolloutActive:
			r.state, r.reason = RolloutPaused, "paused by an operator"
			return true, nil
		}
		return false, fmt.Errorf("%w: rollout %s is %s", api.ErrConflict, id, r.state)
	})
}

// Resume restarts a paused rollout. The failures so far count as accepted:
// it pauses again only when failures beyond them pass max_failures.
func (s *Service) Resume(ctx context.Context, id string) error {
	return s.transition(ctx, id, func(r *rollout) (bool, error) {
		switch r.state {
		case RolloutActive:
			return false, nil
		case RolloutPaused:
			_, failures, _ := r.tally()
			r.state, r.reason, r.accepted = RolloutActive, "", failures
			return true, nil
		}
		return false, fmt.Errorf("%w: rollout %s is %s", api.ErrConflict, id, r.state)
	})
}

// Abort ends a rollout and withdraws the notices of every device that has
// not finished. Aborting an aborted rollout does nothing.
func (s *Service) Abort(ctx context.Context, id string) error {
	return s.transition(ctx, id, func(r *rollout) (bool, error) {
		switch r.state {
		case RolloutAborted:
			return false, nil
		case RolloutActive, RolloutPaused:
			r.state, r.reason, r.finished = RolloutAborted, "aborted by an operator", s.now().UnixMilli()
			return true, nil
		}
		return false, fmt.Errorf("%w: rollout %s is %s", api.ErrConflict, id, r.state)
	})
}

// transition applies an operator's change under opMu and reconciles the
// notices at once, so the answer reflects them.
func (s *Service) transition(ctx context.Context, id string, change func(*rollout) (bool, error)) error {
	s.opMu.Lock()
	defer s.opMu.Unlock()
	r, err := loadRollout(ctx, s.db, id, true)
	if err != nil {
		return err
	}
	prev := r.state
	changed, err := change(r)
	if err != nil {
		return err
	}
	if changed {
		if err := s.saveRollout(ctx, r, prev); err != nil {
			return err
		}
		s.log.Info("ota: rollout "+r.state, "rollout", id, "reason", r.reason)
	}
	return s.reconcileLocked(ctx, id)
}

func (s *Service) saveRollout(ctx context.Context, r *rollout, prevState string) error {
	r.updated = s.now().UnixMilli()
	s.wmu.Lock()
	defer s.wmu.Unlock()
	res, err := s.db.ExecContext(ctx, `UPDATE ota_rollouts SET state=?, reason=?, wave=?, accepted_failures=?, updated_ms=?, finished_ms=?
		WHERE id=? AND state=?`, r.state, r.reason, r.wave, r.accepted, r.updated, r.finished, r.id, prevState)
	if err != nil {
		return fmt.Errorf("ota: save rollout %s: %w", r.id, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("ota: save rollout %s: it changed meanwhile (was %s)", r.id, prevState)
	}
	return nil
}
