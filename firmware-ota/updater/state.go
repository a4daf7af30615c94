package updater

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/outpost-iot/outpost/internal/fsx"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// Phase is a state of the update state machine.
type Phase string

// The phases. Succeeded, Failed and RolledBack are terminal; Idle means no
// update was ever accepted.
const (
	Idle        Phase = "idle"
	Downloading Phase = "downloading"
	Verifying   Phase = "verifying"
	Installing  Phase = "installing"
	Restarting  Phase = "restarting"
	Trial       Phase = "trial"
	Succeeded   Phase = "succeeded"
	Failed      Phase = "failed"
	RolledBack  Phase = "rolled_back"
)

var phases = []Phase{Idle, Downloading, Verifying, Installing, Restarting, Trial, Succeeded, Failed, RolledBack}

// Terminal reports whether p ends an update.
func (p Phase) Terminal() bool { return p == Succeeded || p == Failed || p == RolledBack }

// Wire returns the protocol state reported for p: Trial is reported as
// restarting (the new version runs but has not proved itself yet), Idle
// is not reported.
func (p Phase) Wire() string {
	switch p {
	case Idle:
		return ""
	case Trial:
		return protocol.OTARestarting
	}
	return string(p)
}

func (p Phase) valid() bool {
	for _, q := range phases {
		if p == q {
			return true
		}
	}
	return false
}

// StateSchema is the version of the state file format this package writes.
const StateSchema = 1

// StateFile is the name of the state file in Config.StateDir.
const StateFile = "state.json"

// State is the persisted update state (StateDir/state.json).
type State struct {
	Schema  int    `json:"schema"`
	Phase   Phase  `json:"phase"`
	Seq     uint64 `json:"seq"` // incremented on every phase change
	Rollout string `json:"rollout,omitempty"`
	Release string `json:"release,omitempty"`
	// From is the version that was running when the update was accepted:
	// the version a rollback returns to.
	From string `json:"from,omitempty"`
	URL  string `json:"url,omitempty"`
	// Manifest is the signed manifest envelope from the notice; it is
	// verified again with the release keys whenever it is used.
	Manifest json.RawMessage `json:"manifest,omitempty"`
	SHA256   string          `json:"sha256,omitempty"` // of the artifact, from the verified manifest
	Total    int64           `json:"total,omitempty"`  // artifact size, from the verified manifest
	Bytes    int64           `json:"bytes,omitempty"`  // downloaded and fsynced so far
	Reason   string          `json:"reason,omitempty"` // why it failed or was rolled back
	// Refused marks a notice refused before anything was downloaded (bad
	// signature, wrong target, lower version, no key): such a notice is
	// judged again when it comes back, as the configuration may have changed.
	Refused bool `json:"refused,omitempty"`
	// TrialBoots counts starts of the new version in Trial that did not end
	// in a clean shutdown, this one included. More than one means the new
	// version died before it became healthy.
	TrialBoots int       `json:"trial_boots,omitempty"`
	Changed    time.Time `json:"changed"`
	// Report is the last status not yet acknowledged (PUBACK) by the hub;
	// its fw is filled in when it is sent.
	Report *protocol.OTAStatus `json:"report,omitempty"`
	// Backlog holds the last unacknowledged status of earlier rollouts (a
	// superseded download's failure, say), oldest first, at most 8.
	Backlog []protocol.OTAStatus `json:"backlog,omitempty"`
}

// Status returns the status report for s (without fw).
func (s *State) Status() protocol.OTAStatus {
	return protocol.OTAStatus{V: protocol.Version, Rollout: s.Rollout, Release: s.Release, State: s.Phase.Wire(),
		Bytes: s.Bytes, Total: s.Total, Reason: s.Reason, Time: s.Changed.UnixMilli()}
}

// ErrState wraps problems reading or writing the state file.
var ErrState = errors.New("updater: state file")

// ReadState reads the state file in dir. A missing file is the Idle state.
func ReadState(dir string) (State, error) {
	b, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return State{Schema: StateSchema, Phase: Idle}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("%w: %w", ErrState, err)
	}
	return decodeState(b)
}

func decodeState(b []byte) (State, error) {
	var s State
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&s); err != nil {
		return State{}, fmt.Errorf("%w: %w", ErrState, err)
	}
	if dec.More() {
		return State{}, fmt.Errorf("%w: data after the state object", ErrState)
	}
	switch {
	case s.Schema != StateSchema:
		return State{}, fmt.Errorf("%w: schema %d, this version reads %d", ErrState, s.Schema, StateSchema)
	case !s.Phase.valid():
		return State{}, fmt.Errorf("%w: unknown phase %q", ErrState, s.Phase)
	case s.Phase != Idle && s.Phase != Failed && (s.Rollout == "" || s.Release == ""):
		return State{}, fmt.Errorf("%w: phase %s without rollout or release", ErrState, s.Phase)
	case s.Bytes < 0 || s.Total < 0 || s.TrialBoots < 0:
		return State{}, fmt.Errorf("%w: negative counter", ErrState)
	}
	return s, nil
}

// WriteState replaces the state file in dir atomically and durably: write
// a temporary file, fsync it, rename it over, fsync the directory.
func WriteState(dir string, s State) error {
	s.Schema = StateSchema
	b, err := json.MarshalIndent(&s, "", "  ")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	if err := fsx.WriteFileAtomic(filepath.Join(dir, StateFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	return nil
}
