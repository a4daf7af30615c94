// Package ota is the hub's firmware update service. It stores releases (an
// artifact and its manifest signed with a release key the hub is told to
// trust, kept content-addressed on disk), runs rollouts in waves by
// publishing a retained OTA notice on each targeted device's own topic,
// records the status each device reports, pauses a rollout whose failures
// pass its limit, and serves artifacts (Range requests, so downloads
// resume) to the devices an unfinished rollout targets, authenticated with
// their channel tokens.
//
// Rollouts and per-device status live in SQLite (migration 002_ota.sql).
// The broker keeps retained messages in memory only, so Run re-publishes the
// notices of unfinished rollouts when it starts. One goroutine, Run's,
// advances waves; the broker's status handler only records a status and
// wakes it.
package ota

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/outpost-iot/outpost/firmware-ota/manifest"
	"github.com/outpost-iot/outpost/hub/token"
	"github.com/outpost-iot/outpost/internal/metrics"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// Publisher sends hub → device messages (the broker's in-process client).
type Publisher interface {
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

// PublisherFunc adapts a function to Publisher.
type PublisherFunc func(topic string, payload []byte, retain bool, qos byte) error

// Publish implements Publisher.
func (f PublisherFunc) Publish(topic string, payload []byte, retain bool, qos byte) error {
	return f(topic, payload, retain, qos)
}

// TokenVerifier checks a device's channel token for a client id (the hub's
// token.Verifier).
type TokenVerifier interface {
	Verify(raw, clientID string) (*token.Claims, error)
}

var _ TokenVerifier = (*token.Verifier)(nil)

// Defaults for Options.
const (
	DefaultMaxDownloads    = 32
	DefaultMaxArtifactSize = 256 << 20
	DefaultResyncEvery     = 30 * time.Second
	DefaultRetryAfter      = 10 * time.Second
	DefaultMaxBody         = 1 << 20
)

// Options configure a Service.
type Options struct {
	// DB is the hub store's database (Store.DB()), migrated with 002_ota.sql.
	DB *sql.DB
	// Publisher publishes notices and release announcements.
	Publisher Publisher
	// Verifier checks device tokens on artifact downloads.
	Verifier TokenVerifier
	// ReleaseKeys are the trusted release public keys; uploads are refused
	// while it holds none.
	ReleaseKeys *manifest.Keyring
	// ArtifactDir holds the artifacts (created 0700 if missing).
	ArtifactDir string
	// PublicURL is the base HTTPS URL devices download from, e.g.
	// https://hub.example.org:8443; notices carry
	// PublicURL/api/v1/ota/artifacts/<sha256>.
	PublicURL string
	// AdminToken authorises the admin routes (bearer).
	AdminToken string
	// MaxDownloads caps concurrent artifact downloads; more get 503 with
	// Retry-After. Default DefaultMaxDownloads.
	MaxDownloads int
	// MaxArtifactSize bounds an uploaded artifact. Default DefaultMaxArtifactSize.
	MaxArtifactSize int64
	// MaxBody bounds JSON request bodies. Default DefaultMaxBody.
	MaxBody int64
	// ResyncEvery is how often Run re-checks every unfinished rollout, a
	// safety net behind the wake-ups. Default DefaultResyncEvery.
	ResyncEvery time.Duration
	// RetryAfter is the Retry-After of a download refused for the cap.
	RetryAfter time.Duration
	Metrics    *metrics.Registry
	Logger     *slog.Logger
	Now        func() time.Time
}

// Service is the OTA service. Its HTTP handler and status handler are safe
// for concurrent use; Run must be running for waves to advance.
type Service struct {
	o   Options
	db  *sql.DB
	log *slog.Logger
	m   otaMetrics
	sem chan struct{} // download slots

	kick  chan struct{} // wakes Run; capacity 1
	dmu   sync.Mutex
	dirty map[string]struct{} // rollouts to reconcile
	all   bool                // reconcile every unfinished rollout

	// opMu serialises rollout state changes and notice publishing.
	opMu sync.Mutex
	// notices maps a device to the rollout whose retained notice the broker
	// holds for it now. The broker's retained messages are memory-only, so
	// this is too: empty at start, and Run re-publishes.
	notices map[string]string

	uploadMu sync.Mutex // serialises committing uploads

	// wmu serialises this package's writes. They go through Store.DB()
	// beside the store's own writer (SQLite's busy_timeout and the DSN's
	// _txlock=immediate make each wait for the other); queueing our own
	// writers here keeps them from contending for the write lock among
	// themselves, where SQLite's busy handler would sleep (up to 100 ms a
	// try) instead of handing the lock over at once. Lock order: opMu, then wmu.
	wmu sync.Mutex
}

type otaMetrics struct {
	bytesServed *metrics.Counter
	downloads   *metrics.CounterVec
	statuses    *metrics.CounterVec
	ignored     *metrics.Counter
	uploads     *metrics.CounterVec
	published   *metrics.Counter
	withdrawn   *metrics.Counter
}

// New checks the options and prepares the artifact directory.
func New(o Options) (*Service, error) {
	if o.DB == nil || o.Publisher == nil || o.Verifier == nil {
		return nil, errors.New("ota: DB, Publisher and Verifier are required")
	}
	if o.ArtifactDir == "" {
		return nil, errors.New("ota: ArtifactDir is required")
	}
	if err := validPublicURL(o.PublicURL); err != nil {
		return nil, fmt.Errorf("ota: public url: %w", err)
	}
	if o.MaxDownloads <= 0 {
		o.MaxDownloads = DefaultMaxDownloads
	}
	if o.MaxArtifactSize <= 0 {
		o.MaxArtifactSize = DefaultMaxArtifactSize
	}
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.ResyncEvery <= 0 {
		o.ResyncEvery = DefaultResyncEvery
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = DefaultRetryAfter
	}
	if o.Metrics == nil {
		o.Metrics = &metrics.Registry{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if err := os.MkdirAll(o.ArtifactDir, 0o700); err != nil {
		return nil, fmt.Errorf("ota: artifact dir: %w", err)
	}
	r := o.Metrics
	s := &Service{
		o: o, db: o.DB, log: o.Logger,
		sem:     make(chan struct{}, o.MaxDownloads),
		kick:    make(chan struct{}, 1),
		dirty:   map[string]struct{}{},
		notices: map[string]string{},
		m: otaMetrics{
			bytesServed: r.Counter("outpost_ota_artifact_bytes_total", "Artifact bytes served to devices."),
			downloads:   r.CounterVec("outpost_ota_downloads_total", "Artifact download requests by result.", "result"),
			statuses:    r.CounterVec("outpost_ota_statuses_total", "OTA status reports recorded, by state.", "state"),
			ignored:     r.Counter("outpost_ota_statuses_ignored_total", "OTA status reports for rollouts that do not target the device, or after it finished."),
			uploads:     r.CounterVec("outpost_ota_uploads_total", "Release uploads by result.", "result"),
			published:   r.Counter("outpost_ota_notices_published_total", "Retained OTA notices published."),
			withdrawn:   r.Counter("outpost_ota_notices_withdrawn_total", "Retained OTA notices withdrawn."),
		},
	}
	r.GaugeFunc("outpost_ota_downloads_active", "Artifact downloads in progress.", "", func() map[string]float64 {
		return map[string]float64{"": float64(len(s.sem))}
	})
	return s, nil
}

// Handlers returns the broker handlers for device topics: ota/status.
func (s *Service) Handlers() map[string]func(device string, payload []byte) error {
	return map[string]func(string, []byte) error{protocol.SufOTAStatus: s.handleStatus}
}

// Run re-publishes the retained notices of unfinished rollouts and the
// latest release announcement, then advances rollouts as devices report,
// until ctx ends. It is the only goroutine the service starts.
func (s *Service) Run(ctx context.Context) error {
	if err := s.announceLatest(ctx); err != nil {
		s.log.Error("ota: release announcement", "err", err)
	}
	s.markAll()
	resync := time.NewTicker(s.o.ResyncEvery)
	defer resync.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.kick:
		case <-resync.C:
			s.markAll()
		case <-retry.C:
		}
		if err := s.reconcilePending(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("ota: rollout step failed; retrying", "err", err)
			retry.Reset(time.Second)
		}
	}
}

func (s *Service) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// markDirty asks Run to reconcile rollout id.
func (s *Service) markDirty(id string) {
	s.dmu.Lock()
	s.dirty[id] = struct{}{}
	s.dmu.Unlock()
	s.wake()
}

// markAll asks Run to reconcile every unfinished rollout.
func (s *Service) markAll() {
	s.dmu.Lock()
	s.all = true
	s.dmu.Unlock()
	s.wake()
}

// reconcilePending reconciles the rollouts marked since the last pass.
func (s *Service) reconcilePending(ctx context.Context) error {
	s.dmu.Lock()
	ids, all := s.dirty, s.all
	s.dirty, s.all = map[string]struct{}{}, false
	s.dmu.Unlock()
	if all {
		more, err := s.unfinishedRollouts(ctx)
		if err != nil {
			s.dmu.Lock()
			s.all = true
			s.dmu.Unlock()
			return err
		}
		for _, id := range more {
			ids[id] = struct{}{}
		}
		s.opMu.Lock()
		for _, id := range s.notices { // finished rollouts whose withdrawal failed
			ids[id] = struct{}{}
		}
		s.opMu.Unlock()
	}
	var errs []error
	for id := range ids {
		if ctx.Err() != nil {
			s.markDirty(id)
			continue
		}
		if err := s.reconcile(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("rollout %s: %w", id, err))
			s.dmu.Lock()
			s.dirty[id] = struct{}{}
			s.dmu.Unlock()
		}
	}
	return errors.Join(errs...)
}

func (s *Service) unfinishedRollouts(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM ota_rollouts WHERE state IN ('active','paused')`)
	if err != nil {
		return nil, fmt.Errorf("ota: rollouts: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("ota: rollouts: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func (s *Service) now() time.Time { return s.o.Now() }
