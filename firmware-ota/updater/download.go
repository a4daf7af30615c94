package updater

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/outpost-iot/outpost/internal/wait"
)

// errPermanent marks download errors that retrying cannot fix.
var errPermanent = errors.New("permanent")

type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() []error {
	return []error{p.err, errPermanent}
}

func permanent(format string, args ...any) error {
	return permanentError{fmt.Errorf(format, args...)}
}

// download fetches the artifact of st into the partial file, resuming
// from the bytes already there (as far as the state file says they were
// synced), with Range requests. Transient errors are retried with backoff
// until ctx ends; permanent ones are returned.
func (u *Updater) download(ctx context.Context, st State) error {
	f, err := os.OpenFile(u.partPath(), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("updater: download: %w", err)
	}
	defer func() { _ = f.Close() }() // synced explicitly below
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("updater: download: %w", err)
	}
	// Trust only what was synced before the state said so: after a power
	// cut the tail of the file may be garbage.
	have := min(fi.Size(), st.Bytes)
	if have > st.Total {
		have = 0
	}
	if err := f.Truncate(have); err != nil {
		return fmt.Errorf("updater: download: %w", err)
	}
	if have > 0 {
		u.log.Info("ota: resuming download", "rollout", st.Rollout, "release", st.Release, "have", have, "total", st.Total)
	}
	d := downloader{u: u, f: f, st: st, have: have, lastSave: u.cfg.Now()}
	delay := u.cfg.RetryMin
	for d.have < st.Total {
		before := d.have
		err := d.fetch(ctx)
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			_ = d.checkpoint(false)
			return ctx.Err()
		}
		if errors.Is(err, errCrashed) || errors.Is(err, ErrState) || errors.Is(err, errPermanent) {
			return err
		}
		if d.have > before {
			delay = u.cfg.RetryMin
		}
		if err := d.checkpoint(false); err != nil {
			return err
		}
		u.log.Warn("ota: download interrupted; will resume", "err", err, "have", d.have, "total", st.Total, "retry_in", delay)
		if err := wait.Sleep(ctx, delay); err != nil {
			return err
		}
		delay = min(2*delay, u.cfg.RetryMax)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("updater: download: %w", err)
	}
	return nil
}

type downloader struct {
	u        *Updater
	f        *os.File
	st       State
	have     int64
	lastSave time.Time
}

// fetch makes one request and appends what it gets.
func (d *downloader) fetch(ctx context.Context) error {
	u := d.u
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, d.st.URL, nil)
	if err != nil {
		return permanent("updater: download: %w", err)
	}
	if tok := u.cfg.Token(); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if d.have > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", d.have))
	}
	resp, err := u.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("updater: download: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != d.have {
			// Not the range asked for: start over with a plain request.
			if err := d.restart(); err != nil {
				return err
			}
			return fmt.Errorf("updater: download: unexpected Content-Range %q for offset %d", resp.Header.Get("Content-Range"), d.have)
		}
		if total >= 0 && total != d.st.Total {
			return permanent("updater: download: the hub serves %d bytes, the manifest says %d", total, d.st.Total)
		}
	case http.StatusOK:
		if d.have > 0 {
			if err := d.restart(); err != nil { // the server ignored Range
				return err
			}
		}
		if resp.ContentLength >= 0 && resp.ContentLength != d.st.Total {
			return permanent("updater: download: the hub serves %d bytes, the manifest says %d", resp.ContentLength, d.st.Total)
		}
	case http.StatusRequestedRangeNotSatisfiable:
		if err := d.restart(); err != nil {
			return err
		}
		return fmt.Errorf("updater: download: the hub refused the range from %d", d.have)
	case http.StatusNotFound, http.StatusGone, http.StatusForbidden, http.StatusBadRequest:
		return permanent("updater: download %s: hub answered %s", d.st.URL, resp.Status)
	default:
		// 401 (a token being refreshed), 429, 5xx, ...: try again later.
		return fmt.Errorf("updater: download %s: hub answered %s", d.st.URL, resp.Status)
	}
	// A stalled connection is cut after StallTimeout without a byte.
	stall := time.AfterFunc(u.cfg.StallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()
	buf := make([]byte, 32<<10)
	body := io.LimitReader(resp.Body, d.st.Total-d.have)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			stall.Reset(u.cfg.StallTimeout)
			if _, err := d.f.WriteAt(buf[:n], d.have); err != nil {
				return permanent("updater: download: write %s: %w", d.f.Name(), err)
			}
			d.have += int64(n)
			if now := u.cfg.Now(); now.Sub(d.lastSave) >= u.cfg.ProgressInterval {
				if err := d.checkpoint(true); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			if d.have < d.st.Total {
				return fmt.Errorf("updater: download: connection ended at %d of %d bytes", d.have, d.st.Total)
			}
			return nil
		}
		if rerr != nil {
			if c := context.Cause(rctx); errors.Is(c, errStalled) {
				return fmt.Errorf("updater: download: %w", c)
			}
			return fmt.Errorf("updater: download: %w", rerr)
		}
	}
}

var errStalled = errors.New("no data received within the stall timeout")

// restart throws the partial file away.
func (d *downloader) restart() error {
	d.have = 0
	if err := d.f.Truncate(0); err != nil {
		return permanent("updater: download: %w", err)
	}
	return nil
}

// checkpoint syncs the partial file, records its length in the state file
// and, if report, sends a progress report.
func (d *downloader) checkpoint(report bool) error {
	if err := d.f.Sync(); err != nil {
		return permanent("updater: download: sync %s: %w", d.f.Name(), err)
	}
	d.lastSave = d.u.cfg.Now()
	have := d.have
	if err := d.u.update(func(s *State) { s.Bytes = have }); err != nil {
		return err
	}
	if err := d.u.crash("progress"); err != nil {
		return err
	}
	if report {
		d.u.progress()
	}
	return nil
}

// parseContentRange parses "bytes START-END/TOTAL" (TOTAL may be "*": -1).
func parseContentRange(s string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	a, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 {
		return 0, 0, false
	}
	if tot == "*" {
		return start, -1, true
	}
	total, err = strconv.ParseInt(tot, 10, 64)
	if err != nil || total < 0 {
		return 0, 0, false
	}
	return start, total, true
}
