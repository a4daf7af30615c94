package updater

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/outpost-iot/outpost/firmware-ota/manifest"
	"github.com/outpost-iot/outpost/internal/protocol"
	"github.com/outpost-iot/outpost/internal/wait"
)

// ErrRestart is returned by Run when the process must restart: the binary
// in place is now another version than the one running (after an install
// or a rollback). The worker exits with ExitRestart.
var ErrRestart = errors.New("updater: restart required to run the binary now in place")

// ExitRestart is the exit status with which a worker asks its supervisor to
// start it again at once, from the binary now in place (EX_TEMPFAIL).
const ExitRestart = 75

// Reporter sends a status report to the hub (QoS 1) and returns once the
// hub acknowledged it; an error means it was not (yet) acknowledged.
type Reporter interface {
	PublishStatus(ctx context.Context, st protocol.OTAStatus) error
}

// ReporterFunc adapts a function to Reporter.
type ReporterFunc func(ctx context.Context, st protocol.OTAStatus) error

// PublishStatus implements Reporter.
func (f ReporterFunc) PublishStatus(ctx context.Context, st protocol.OTAStatus) error {
	return f(ctx, st)
}

// Config configures an Updater.
type Config struct {
	// StateDir holds the state file and the partial download; created 0700.
	StateDir string
	// Keys are the trusted release keys. Without any, every notice is
	// refused ("no release key configured").
	Keys *manifest.Keyring
	// Version is the running version (buildinfo.Version).
	Version string
	// Host describes this device (manifest.HostTarget).
	Host      manifest.Target
	Installer Installer
	Reporter  Reporter
	// HTTPClient downloads artifacts; it must trust the hub's CA.
	HTTPClient *http.Client
	// Token returns the device's channel token, sent as a Bearer token.
	Token func() string
	// HealthTimeout bounds the time a new version has to report itself
	// healthy (connected, its succeeded status acknowledged); default 2 min.
	HealthTimeout time.Duration
	// ProgressInterval is how often a download reports its progress and
	// checkpoints the partial file; default 5 s.
	ProgressInterval time.Duration
	// RetryMin and RetryMax bound the backoff between download attempts and
	// report attempts; defaults 1 s and 1 min.
	RetryMin, RetryMax time.Duration
	// StallTimeout cuts a download that received nothing for this long;
	// default 1 min.
	StallTimeout time.Duration
	// ReportTimeout bounds one report attempt; default 30 s.
	ReportTimeout time.Duration
	// NeverHealthy makes a new version never report itself healthy, so it
	// is rolled back at the health timeout (end-to-end tests only).
	NeverHealthy bool
	Logger       *slog.Logger
	Now          func() time.Time
}

func (c *Config) defaults() error {
	switch {
	case c.StateDir == "":
		return errors.New("updater: StateDir is required")
	case c.Version == "":
		return errors.New("updater: Version is required")
	case c.Installer == nil || c.Reporter == nil:
		return errors.New("updater: Installer and Reporter are required")
	}
	if c.HTTPClient == nil {
		c.HTTPClient = http.DefaultClient
	}
	if c.Token == nil {
		c.Token = func() string { return "" }
	}
	if c.HealthTimeout <= 0 {
		c.HealthTimeout = 2 * time.Minute
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = 5 * time.Second
	}
	if c.RetryMin <= 0 {
		c.RetryMin = time.Second
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(time.Minute, c.RetryMin)
	}
	if c.StallTimeout <= 0 {
		c.StallTimeout = time.Minute
	}
	if c.ReportTimeout <= 0 {
		c.ReportTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Updater is the gateway-side update state machine. New recovers the
// persisted state (and does what a start in that state requires), Notice
// feeds it notices from the hub, Run drives it.
type Updater struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	st        State
	pending   *pendingNotice // latest notice not yet handled
	job       string         // rollout/release of the download or verification in progress
	jobCancel context.CancelCauseFunc
	outq      []*outgoing // statuses not yet acknowledged: the newest per rollout, oldest first
	outN      uint64

	wake    chan struct{} // a notice arrived
	repWake chan struct{} // a status was queued
	restart bool          // the binary in place is not the running version

	crashAt func(point string) bool // tests: simulate a crash at a point
	dead    bool                    // tests: crashed; nothing is written any more
}

type pendingNotice struct {
	n        protocol.OTANotice
	withdraw bool
}

type outgoing struct {
	st       protocol.OTAStatus
	stateSeq uint64 // the State.Seq it reports; 0 for State.Backlog entries
	n        uint64
}

// Causes with which a download or verification is cancelled.
var (
	errSuperseded = errors.New("superseded by a newer notice")
	errWithdrawn  = errors.New("withdrawn by the hub")
	errCrashed    = errors.New("updater: simulated crash")
)

// New opens the state in cfg.StateDir and acts on it: the first start of a
// new version enters Trial; a version that started in Trial before
// without becoming healthy is rolled back (Run then returns ErrRestart).
// A corrupt or unreadable state file is moved aside and logged.
func New(cfg Config) (*Updater, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("updater: %w", err)
	}
	u := &Updater{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1), repWake: make(chan struct{}, 1)}
	st, err := ReadState(cfg.StateDir)
	if err != nil {
		bad := filepath.Join(cfg.StateDir, StateFile+".bad")
		u.log.Error("ota: unreadable state file moved aside; starting idle", "err", err, "moved_to", bad)
		if rerr := os.Rename(filepath.Join(cfg.StateDir, StateFile), bad); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return nil, fmt.Errorf("updater: %w", rerr)
		}
		st = State{Schema: StateSchema, Phase: Idle}
	}
	u.st = st
	for _, b := range st.Backlog {
		u.outN++
		u.outq = append(u.outq, &outgoing{st: b, n: u.outN})
	}
	if st.Report != nil {
		u.outN++
		u.outq = append(u.outq, &outgoing{st: *st.Report, stateSeq: st.Seq, n: u.outN})
	}
	if len(cfg.Keys.KeyIDs()) == 0 {
		u.log.Warn("ota: no release key configured (release_pubkey, --release-pubkey or compiled in): updates will be refused")
	}
	if err := u.boot(); err != nil {
		return nil, err
	}
	return u, nil
}

// boot does what starting in the persisted phase requires.
func (u *Updater) boot() error {
	st := u.st
	v := u.cfg.Version
	switch st.Phase {
	case Restarting:
		if v == st.Release {
			u.log.Info("ota: new version started; waiting for it to become healthy", "rollout", st.Rollout, "release", v, "within", u.cfg.HealthTimeout)
			return u.transition(Trial, func(s *State) { s.TrialBoots = 1; s.Reason = "" })
		}
		reason := fmt.Sprintf("restarted, but version %s is running instead of %s (is the updated binary the one that is started?)", v, st.Release)
		if ok, _ := u.cfg.Installer.Installed(artifact(st)); ok {
			if err := u.cfg.Installer.Rollback(); err != nil {
				reason += "; putting the previous binary back failed: " + err.Error()
			}
		}
		u.log.Error("ota: update failed", "reason", reason)
		return u.transition(Failed, func(s *State) { s.Reason = reason; s.TrialBoots = 0 })
	case Trial:
		if v != st.Release {
			// The binary was put back but the state not yet updated.
			reason := fmt.Sprintf("version %s stopped before it became healthy", st.Release)
			return u.transition(RolledBack, func(s *State) { s.Reason = reason; s.TrialBoots = 0 })
		}
		boots := st.TrialBoots + 1
		if err := u.update(func(s *State) { s.TrialBoots = boots }); err != nil {
			return err
		}
		if boots > 1 {
			err := u.rollback(fmt.Sprintf("version %s stopped before it became healthy (start %d in trial)", v, boots))
			if errors.Is(err, ErrRestart) {
				u.restart = true
				return nil
			}
			return err
		}
	case RolledBack:
		if v == st.Release && v != st.From {
			if ok, _ := u.cfg.Installer.Installed(artifact(st)); !ok {
				u.log.Warn("ota: still running the rolled-back version; restarting into the previous one", "running", v)
				u.restart = true
			}
		}
	}
	return nil
}

// State returns a copy of the current state.
func (u *Updater) State() State {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.st
}

// Notice takes a payload of the device's in/ota topic (an empty payload
// withdraws the notice). It never blocks: the newest notice wins, and a
// notice that supersedes a download or verification in progress cancels it.
func (u *Updater) Notice(payload []byte) {
	var p pendingNotice
	if len(payload) == 0 {
		p.withdraw = true
	} else {
		n, err := protocol.DecodeOTANotice(payload)
		if err != nil {
			u.log.Warn("ota: malformed notice ignored", "err", err)
			return
		}
		p.n = n
	}
	u.mu.Lock()
	switch {
	case u.job != "" && !p.withdraw && jobKey(p.n.Rollout, p.n.Release) == u.job:
		// The retained notice again (a reconnection): already on it.
		u.mu.Unlock()
		return
	case u.jobCancel != nil && (u.st.Phase == Downloading || u.st.Phase == Verifying):
		if p.withdraw {
			u.jobCancel(errWithdrawn)
		} else {
			u.jobCancel(errSuperseded)
		}
	}
	u.pending = &p
	u.mu.Unlock()
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

func jobKey(rollout, release string) string { return rollout + "\x00" + release }

// Run drives the state machine until ctx ends: it reports statuses, checks
// the health of a new version, resumes an interrupted update and handles
// notices. It returns ErrRestart when the process must restart.
func (u *Updater) Run(ctx context.Context) error {
	rctx, stopReporter := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); u.reporter(rctx) }()
	defer func() { stopReporter(); wg.Wait() }()

	err := u.run(ctx)
	if errors.Is(err, ErrRestart) && u.State().Phase == Restarting {
		u.flush(ctx)
	}
	return err
}

func (u *Updater) run(ctx context.Context) error {
	if u.restart {
		return ErrRestart
	}
	// Errors other than a restart (the state file cannot be written, say)
	// end the update at hand, not the updater.
	fatal := func(err error) bool {
		if err == nil {
			return false
		}
		if errors.Is(err, ErrRestart) || errors.Is(err, errCrashed) {
			return true
		}
		u.log.Error("ota: update stopped", "err", err)
		return false
	}
	if p := u.State().Phase; p == Idle || p.Terminal() {
		u.cleanup() // what an interrupted or rolled-back update left
	}
	if u.State().Phase == Trial {
		if err := u.trial(ctx); fatal(err) {
			return err
		}
	}
	if err := u.work(ctx); fatal(err) {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-u.wake:
		}
		for {
			u.mu.Lock()
			p := u.pending
			u.pending = nil
			u.mu.Unlock()
			if p == nil || ctx.Err() != nil {
				break
			}
			if p.withdraw {
				continue // nothing in progress to withdraw
			}
			if err := u.handle(ctx, p.n); fatal(err) {
				return err
			}
		}
	}
}

// handle judges a notice and, if it is accepted, carries the update out.
func (u *Updater) handle(ctx context.Context, n protocol.OTANotice) error {
	st := u.State()
	same := st.Rollout == n.Rollout && st.Release == n.Release
	if same && !st.Phase.Terminal() && st.Phase != Idle {
		return nil // in progress
	}
	if same && st.Phase.Terminal() && !st.Refused {
		// The retained notice again after the update ended (e.g. after the
		// restart into the new version, or after a rollback): report the
		// outcome again, never install again.
		u.queue(st, st.Seq)
		return nil
	}
	m, err := u.judge(n)
	if err != nil {
		// Refusals are judged again each time: the configuration (keys)
		// may have changed since.
		reason := truncate(err.Error())
		if same && st.Phase == Failed && st.Refused && st.Reason == reason {
			u.queue(st, st.Seq) // the same refusal again: report it again
			return nil
		}
		u.log.Warn("ota: update refused", "rollout", n.Rollout, "release", n.Release, "reason", reason)
		return u.transition(Failed, func(s *State) {
			*s = State{Rollout: n.Rollout, Release: n.Release, From: u.cfg.Version, URL: n.URL, Reason: reason, Refused: true}
		})
	}
	if n.Release == u.cfg.Version {
		u.log.Info("ota: release already running", "rollout", n.Rollout, "release", n.Release)
		return u.transition(Succeeded, func(s *State) {
			*s = State{Rollout: n.Rollout, Release: n.Release, From: u.cfg.Version, Total: m.Size, SHA256: m.SHA256}
		})
	}
	u.log.Info("ota: update accepted", "rollout", n.Rollout, "release", n.Release, "running", u.cfg.Version, "size", m.Size)
	_ = os.Remove(u.partPath())
	_ = u.cfg.Installer.Discard()
	if err := u.transition(Downloading, func(s *State) {
		*s = State{Rollout: n.Rollout, Release: n.Release, From: u.cfg.Version, URL: n.URL, Manifest: n.Manifest,
			SHA256: m.SHA256, Total: m.Size}
	}); err != nil {
		return err
	}
	if err := u.crash("accepted"); err != nil {
		return err
	}
	return u.work(ctx)
}

// judge decides whether n may be installed here and returns its verified
// manifest. Its errors are the reasons reported to the hub.
func (u *Updater) judge(n protocol.OTANotice) (manifest.Manifest, error) {
	if len(u.cfg.Keys.KeyIDs()) == 0 {
		return manifest.Manifest{}, errors.New("no release key configured")
	}
	m, err := manifest.VerifyManifest(u.cfg.Keys, n.Manifest)
	if err != nil {
		return m, err
	}
	if m.Version.String() != n.Release {
		return m, fmt.Errorf("the signed manifest is for version %s, the notice for %s", m.Version, n.Release)
	}
	if err := manifest.CheckTarget(m.Target, u.cfg.Host); err != nil {
		return m, err
	}
	if n.Release == u.cfg.Version {
		return m, nil
	}
	running, err := manifest.ParseVersion(u.cfg.Version)
	if err != nil {
		// A development build ("dev") is below every release.
		running = manifest.Version{Pre: []string{"0"}}
	}
	if c := manifest.Compare(m.Version, running); c <= 0 && !n.AllowDowngrade {
		word := "lower than"
		if c == 0 {
			word = "the same as"
		}
		return m, fmt.Errorf("release %s is %s the running %s and the rollout does not allow a downgrade", m.Version, word, u.cfg.Version)
	}
	return m, nil
}

// work carries an accepted update on from the persisted phase until it
// ends, fails or needs a restart. A shutdown leaves the phase as it is, to
// be resumed at the next start.
func (u *Updater) work(ctx context.Context) error {
	st := u.State()
	if st.Phase != Downloading && st.Phase != Verifying && st.Phase != Installing {
		return nil
	}
	jctx, cancel := context.WithCancelCause(ctx)
	u.mu.Lock()
	u.job, u.jobCancel = jobKey(st.Rollout, st.Release), cancel
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		u.job, u.jobCancel = "", nil
		u.mu.Unlock()
		cancel(nil)
	}()
	for {
		st := u.State()
		if jctx.Err() != nil && ctx.Err() == nil && st.Phase != Installing {
			cause := context.Cause(jctx)
			u.log.Info("ota: update abandoned", "rollout", st.Rollout, "release", st.Release, "reason", cause)
			return u.fail(cause.Error())
		}
		var err error
		switch st.Phase {
		case Downloading:
			err = u.stepDownload(jctx, st)
		case Verifying:
			err = u.stepVerify(jctx, st)
		case Installing:
			err = u.stepInstall(st)
		default:
			return nil
		}
		switch {
		case err == nil:
		case errors.Is(err, errCrashed):
			u.mu.Lock()
			u.dead = true // an installer step "crashed"
			u.mu.Unlock()
			return err
		case errors.Is(err, ErrRestart), errors.Is(err, ErrState):
			return err
		case ctx.Err() != nil:
			return nil // shutdown: resumed at the next start
		case jctx.Err() != nil:
			cause := context.Cause(jctx)
			u.log.Info("ota: update abandoned", "rollout", st.Rollout, "release", st.Release, "reason", cause)
			return u.fail(cause.Error())
		default:
			u.log.Error("ota: update failed", "rollout", st.Rollout, "release", st.Release, "phase", st.Phase, "err", err)
			return u.fail(err.Error())
		}
	}
}

func (u *Updater) stepDownload(ctx context.Context, st State) error {
	u.log.Info("ota: downloading", "rollout", st.Rollout, "release", st.Release, "url", st.URL, "total", st.Total)
	if err := u.download(ctx, st); err != nil {
		return err
	}
	if err := u.crash("downloaded"); err != nil {
		return err
	}
	return u.transition(Verifying, func(s *State) { s.Bytes = s.Total })
}

// stepVerify checks the signature again and stages the download, checking
// size and digest of the very bytes written to the staged binary.
func (u *Updater) stepVerify(ctx context.Context, st State) error {
	m, err := u.verified(st)
	if err != nil {
		return err
	}
	f, err := os.Open(u.partPath())
	if errors.Is(err, fs.ErrNotExist) {
		u.log.Warn("ota: download missing; downloading again")
		return u.transition(Downloading, func(s *State) { s.Bytes = 0 })
	}
	if err != nil {
		return fmt.Errorf("updater: verify: %w", err)
	}
	defer func() { _ = f.Close() }() // read-only
	if err := u.cfg.Installer.Stage(ctx, m, f); err != nil {
		if errors.Is(err, manifest.ErrDigestMismatch) || errors.Is(err, manifest.ErrSizeMismatch) {
			_ = os.Remove(u.partPath()) // a retry must download it again
		}
		return err
	}
	if err := u.crash("staged"); err != nil {
		return err
	}
	return u.transition(Installing, nil)
}

func (u *Updater) stepInstall(st State) error {
	m, err := u.verified(st)
	if err != nil {
		return err
	}
	ok, err := u.cfg.Installer.Installed(m)
	if err != nil {
		return err
	}
	if !ok {
		if err := u.crash("installing"); err != nil {
			return err
		}
		if err := u.cfg.Installer.Swap(); errors.Is(err, ErrNotStaged) {
			u.log.Warn("ota: staged binary missing; verifying again")
			return u.transition(Verifying, nil)
		} else if err != nil {
			return err
		}
	}
	if err := u.crash("swapped"); err != nil {
		return err
	}
	if err := u.transition(Restarting, func(s *State) { s.TrialBoots = 0 }); err != nil {
		return err
	}
	if err := u.crash("restarting"); err != nil {
		return err
	}
	u.log.Info("ota: installed; restarting into the new version", "rollout", st.Rollout, "release", st.Release)
	return ErrRestart
}

// verified verifies the manifest of st again (the keys may have changed).
func (u *Updater) verified(st State) (manifest.Manifest, error) {
	if len(u.cfg.Keys.KeyIDs()) == 0 {
		return manifest.Manifest{}, errors.New("no release key configured")
	}
	m, err := manifest.VerifyManifest(u.cfg.Keys, st.Manifest)
	if err != nil {
		return m, err
	}
	if m.SHA256 != st.SHA256 || m.Size != st.Total {
		return m, fmt.Errorf("updater: state file does not match its manifest")
	}
	return m, nil
}

// fail ends the update as failed and removes what it downloaded and staged.
func (u *Updater) fail(reason string) error {
	u.cleanup()
	return u.transition(Failed, func(s *State) { s.Reason = reason })
}

// cleanup removes the download and any staged binary.
func (u *Updater) cleanup() {
	if err := os.Remove(u.partPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		u.log.Warn("ota: cannot remove the download", "err", err)
	}
	if err := u.cfg.Installer.Discard(); err != nil {
		u.log.Warn("ota: cannot remove the staged binary", "err", err)
	}
}

// trial waits for the new version to become healthy: its succeeded status
// acknowledged by the hub within HealthTimeout. Otherwise it rolls back.
func (u *Updater) trial(ctx context.Context) error {
	st := u.State()
	if err := u.crash("trial"); err != nil {
		return err
	}
	hctx, cancel := context.WithTimeout(ctx, u.cfg.HealthTimeout)
	defer cancel()
	ok := st
	ok.Phase, ok.Reason, ok.Changed = Succeeded, "", u.cfg.Now()
	report := ok.Status()
	report.Firmware = u.cfg.Version
	delay := u.cfg.RetryMin
	var last error
	for {
		var err error
		if u.cfg.NeverHealthy {
			err = errors.New("built never to become healthy (test fault)")
			<-hctx.Done()
		} else {
			err = u.cfg.Reporter.PublishStatus(hctx, report)
		}
		if err == nil {
			if err := u.crash("healthy"); err != nil {
				return err
			}
			u.log.Info("ota: update succeeded", "rollout", st.Rollout, "release", st.Release)
			_ = os.Remove(u.partPath())
			return u.transition(Succeeded, func(s *State) { s.TrialBoots = 0; s.Reason = "" }, acked)
		}
		if hctx.Err() == nil || last == nil {
			last = err
		}
		if ctx.Err() != nil {
			// A clean shutdown during the trial: this start does not count.
			return u.update(func(s *State) { s.TrialBoots = max(0, s.TrialBoots-1) })
		}
		if hctx.Err() != nil {
			return u.rollback(fmt.Sprintf("version %s not healthy within %v: %v", st.Release, u.cfg.HealthTimeout, last))
		}
		u.log.Debug("ota: health report not acknowledged yet", "err", err)
		_ = wait.Sleep(hctx, delay)
		delay = min(2*delay, 10*time.Second)
	}
}

// rollback puts the previous binary back and records why. It returns
// ErrRestart if the previous version must now be started.
func (u *Updater) rollback(reason string) error {
	if err := u.cfg.Installer.Rollback(); err != nil {
		u.log.Error("ota: cannot roll back", "reason", reason, "err", err)
		return u.transition(Failed, func(s *State) { s.Reason = reason + "; cannot roll back: " + err.Error(); s.TrialBoots = 0 })
	}
	if err := u.crash("rolled-back"); err != nil {
		return err
	}
	u.log.Error("ota: rolled back", "reason", reason)
	// The previous version, started next, reports the rollback.
	if err := u.transition(RolledBack, func(s *State) { s.Reason = reason; s.TrialBoots = 0 }, deferred); err != nil {
		return err
	}
	return ErrRestart
}

// RollbackAfterExit is the supervisor's half of the health check: a worker
// started while the state was Restarting or Trial (candidate) has exited,
// described by exit (e.g. "exit status 2"). If the state is still
// Restarting or Trial, that new version died before it became healthy: the
// previous binary is put back and the state set to RolledBack. It reports
// whether it rolled back.
func RollbackAfterExit(stateDir string, inst Installer, exit string, now time.Time) (bool, error) {
	st, err := ReadState(stateDir)
	if err != nil {
		return false, err
	}
	if st.Phase != Restarting && st.Phase != Trial {
		return false, nil
	}
	reason := fmt.Sprintf("version %s exited (%s) before it became healthy", st.Release, exit)
	next := RolledBack
	if err := inst.Rollback(); err != nil {
		next, reason = Failed, reason+"; cannot roll back: "+err.Error()
	}
	st.Phase, st.Reason, st.TrialBoots, st.Changed = next, truncate(reason), 0, now
	st.Seq++
	r := st.Status()
	st.Report = &r
	if err := WriteState(stateDir, st); err != nil {
		return false, err
	}
	return next == RolledBack, nil
}

// StartsCandidate reports whether a worker started now runs a new version
// on trial (the state is Restarting or Trial).
func StartsCandidate(stateDir string) bool {
	st, err := ReadState(stateDir)
	return err == nil && (st.Phase == Restarting || st.Phase == Trial)
}

type option int

const (
	acked    option = iota + 1 // the status of this transition was already acknowledged
	deferred                   // persist the status; the next process (version) sends it
)

// transition persists a phase change (made by mutate) and queues its
// status report. The state in memory changes only once it is on disk.
func (u *Updater) transition(p Phase, mutate func(*State), opts ...option) error {
	u.mu.Lock()
	if u.dead {
		u.mu.Unlock()
		return errCrashed
	}
	st := u.st
	if mutate != nil {
		mutate(&st)
	}
	st.Phase, st.Changed = p, u.cfg.Now()
	st.Seq = u.st.Seq + 1
	st.Reason = truncate(st.Reason)
	st.Backlog = slices.Clone(u.st.Backlog)
	if prev := u.st.Report; prev != nil && prev.Rollout != st.Rollout {
		// Another rollout's last status, not yet acknowledged: keep it.
		st.Backlog = append(st.Backlog, *prev)
		if len(st.Backlog) > maxBacklog {
			st.Backlog = st.Backlog[len(st.Backlog)-maxBacklog:]
		}
	}
	st.Report = nil
	report := !slices.Contains(opts, acked) && p.Wire() != "" && p != Trial
	if report {
		r := st.Status()
		st.Report = &r
	}
	if err := WriteState(u.cfg.StateDir, st); err != nil {
		u.mu.Unlock()
		return err
	}
	u.st = st
	// Never report an older state of this rollout after a newer one.
	u.outq = slices.DeleteFunc(u.outq, func(o *outgoing) bool { return o.stateSeq != 0 && o.st.Rollout == st.Rollout })
	u.mu.Unlock()
	if report && !slices.Contains(opts, deferred) {
		u.queue(st, st.Seq)
	}
	return nil
}

// update persists a change that is not a phase change.
func (u *Updater) update(mutate func(*State)) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.dead {
		return errCrashed
	}
	st := u.st
	mutate(&st)
	if err := WriteState(u.cfg.StateDir, st); err != nil {
		return err
	}
	u.st = st
	return nil
}

// maxBacklog bounds State.Backlog.
const maxBacklog = 8

// queue makes st's status the next report of its rollout.
func (u *Updater) queue(st State, seq uint64) {
	u.mu.Lock()
	u.outN++
	o := &outgoing{st: st.Status(), stateSeq: seq, n: u.outN}
	u.outq = slices.DeleteFunc(u.outq, func(q *outgoing) bool { return q.stateSeq != 0 && q.st.Rollout == o.st.Rollout })
	u.outq = append(u.outq, o)
	u.mu.Unlock()
	select {
	case u.repWake <- struct{}{}:
	default:
	}
}

// progress queues a progress report of the current state (not persisted).
func (u *Updater) progress() {
	st := u.State()
	u.queue(st, st.Seq)
}

// reporter sends the queued statuses, oldest first, each until the hub
// acknowledges it, retrying with backoff; an acknowledged status is
// cleared from the state file.
func (u *Updater) reporter(ctx context.Context) {
	delay := u.cfg.RetryMin
	for {
		u.mu.Lock()
		var o *outgoing
		if len(u.outq) > 0 {
			o = u.outq[0]
		}
		u.mu.Unlock()
		if o == nil {
			select {
			case <-ctx.Done():
				return
			case <-u.repWake:
				continue
			}
		}
		err := u.send(ctx, o)
		if err == nil {
			delay = u.cfg.RetryMin
			continue
		}
		if ctx.Err() != nil {
			return
		}
		u.log.Debug("ota: status report not acknowledged; will retry", "state", o.st.State, "err", err, "retry_in", delay)
		if wait.Sleep(ctx, delay) != nil {
			return
		}
		delay = min(2*delay, u.cfg.RetryMax)
	}
}

func (u *Updater) send(ctx context.Context, o *outgoing) error {
	st := o.st
	st.Firmware = u.cfg.Version
	pctx, cancel := context.WithTimeout(ctx, u.cfg.ReportTimeout)
	err := u.cfg.Reporter.PublishStatus(pctx, st)
	cancel()
	if err != nil {
		return err
	}
	u.mu.Lock()
	u.outq = slices.DeleteFunc(u.outq, func(q *outgoing) bool { return q.n == o.n })
	// The state file forgets the report if it was its current one (or an
	// older one of the same state), or an entry of its backlog.
	clears := func(s *State) bool { return o.stateSeq != 0 && s.Report != nil && s.Seq <= o.stateSeq }
	dirty := clears(&u.st) || slices.Contains(u.st.Backlog, o.st)
	u.mu.Unlock()
	if dirty {
		if err := u.update(func(s *State) {
			if clears(s) {
				s.Report = nil
			}
			s.Backlog = slices.DeleteFunc(slices.Clone(s.Backlog), func(b protocol.OTAStatus) bool { return b == o.st })
		}); err != nil {
			u.log.Warn("ota: could not record the acknowledged report", "err", err)
		}
	}
	return nil
}

// flush tries briefly to deliver the queued statuses before a restart (the
// state file keeps them otherwise, but the next version may supersede the
// last one).
func (u *Updater) flush(ctx context.Context) {
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for fctx.Err() == nil {
		u.mu.Lock()
		var o *outgoing
		if len(u.outq) > 0 {
			o = u.outq[0]
		}
		u.mu.Unlock()
		if o == nil {
			return
		}
		if err := u.send(fctx, o); err != nil {
			u.log.Debug("ota: status not delivered before the restart; kept in the state file", "state", o.st.State, "err", err)
			return
		}
	}
}

// crash simulates a crash at point if the test hook says so: from then on
// the updater writes nothing (as a dead process would not).
func (u *Updater) crash(point string) error {
	if u.crashAt != nil && u.crashAt(point) {
		u.mu.Lock()
		u.dead = true
		u.mu.Unlock()
		return fmt.Errorf("%w at %s", errCrashed, point)
	}
	return nil
}

// partPath is the partial (or complete) download.
func (u *Updater) partPath() string { return filepath.Join(u.cfg.StateDir, "download.part") }

// artifact is the size and digest st records, for Installed checks.
func artifact(st State) manifest.Manifest {
	return manifest.Manifest{Size: st.Total, SHA256: st.SHA256}
}

// truncate keeps s within protocol.MaxTextLen bytes, on a rune boundary.
func truncate(s string) string {
	if len(s) <= protocol.MaxTextLen {
		return s
	}
	i := protocol.MaxTextLen - 3
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "..."
}
