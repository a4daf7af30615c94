package updater

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Supervisor runs the worker process and starts it again when it exits,
// so that a gateway restarts into a new binary (and back into the old one)
// with or without systemd. It resolves nothing itself: Path is executed
// afresh at each start, so a binary renamed into Path is picked up.
type Supervisor struct {
	Path string   // the executable to run (resolved once by the caller)
	Args []string // the worker's arguments (without argv[0])
	// StateDir is the updater's state directory; with it, a new version
	// that exits before it became healthy is rolled back at once
	// (RollbackAfterExit). Empty: no update checks.
	StateDir string
	// Installer puts the previous binary back; default FileInstaller{Path}.
	Installer Installer
	// Signals are forwarded to the worker; after one, the supervisor exits
	// when the worker does. Cancelling the context of Run sends SIGTERM.
	Signals <-chan os.Signal
	// MinBackoff and MaxBackoff bound the delay before restarting a worker
	// that exited on its own (defaults 1 s and 30 s); a worker that ran at
	// least StableAfter (default 1 min) resets the delay. ExitRestart
	// restarts at once unless the worker asked so twice within StableAfter.
	MinBackoff, MaxBackoff, StableAfter time.Duration
	Stdout, Stderr                      io.Writer // default os.Stdout, os.Stderr
	Env                                 []string  // default os.Environ()
	Logger                              *slog.Logger
}

// Run supervises until the worker exits after a signal (or ctx ended) and
// returns the worker's exit status then (128+n for a worker killed by
// signal n; 0 if no worker was running). An error means the supervisor
// could not go on.
func (s *Supervisor) Run(ctx context.Context) (int, error) {
	if s.Path == "" {
		return 1, errors.New("updater: supervisor: Path is required")
	}
	if s.MinBackoff <= 0 {
		s.MinBackoff = time.Second
	}
	if s.MaxBackoff < s.MinBackoff {
		s.MaxBackoff = max(30*time.Second, s.MinBackoff)
	}
	if s.StableAfter <= 0 {
		s.StableAfter = time.Minute
	}
	if s.Installer == nil {
		s.Installer = FileInstaller{Path: s.Path}
	}
	if s.Stdout == nil {
		s.Stdout = os.Stdout
	}
	if s.Stderr == nil {
		s.Stderr = os.Stderr
	}
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	done := ctx.Done()
	delay := s.MinBackoff
	var lastRestart time.Time
	for starts := 1; ; starts++ {
		candidate := s.StateDir != "" && StartsCandidate(s.StateDir)
		cmd := exec.Command(s.Path, s.Args...)
		cmd.Stdout, cmd.Stderr, cmd.Env = s.Stdout, s.Stderr, s.Env
		cmd.SysProcAttr = sysProcAttr()
		began := time.Now()
		if err := cmd.Start(); err != nil {
			if candidate {
				// A new binary that cannot even be executed.
				if rolled, rerr := RollbackAfterExit(s.StateDir, s.Installer, "could not start: "+err.Error(), time.Now()); rolled {
					log.Error("supervisor: new version could not start; rolled back", "err", err)
					continue
				} else if rerr != nil {
					log.Error("supervisor: cannot check the update state", "err", rerr)
				}
			}
			log.Error("supervisor: cannot start the worker", "path", s.Path, "err", err, "retry_in", delay)
			select {
			case <-done:
				return 1, fmt.Errorf("updater: supervisor: %w", err)
			case <-s.Signals:
				return 1, fmt.Errorf("updater: supervisor: %w", err)
			case <-time.After(delay):
			}
			delay = min(2*delay, s.MaxBackoff)
			continue
		}
		log.Info("supervisor: worker started", "pid", cmd.Process.Pid, "path", s.Path, "start", starts, "new_version_on_trial", candidate)
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		stopping := false
		var werr error
	wait:
		for {
			select {
			case werr = <-exited:
				break wait
			case sig := <-s.Signals:
				stopping = true
				log.Info("supervisor: forwarding signal", "signal", sig)
				_ = cmd.Process.Signal(sig)
			case <-done:
				done = nil
				stopping = true
				_ = cmd.Process.Signal(syscall.SIGTERM)
			}
		}
		code, desc := exitStatus(cmd, werr)
		ran := time.Since(began)
		if stopping {
			log.Info("supervisor: worker stopped", "status", desc)
			return code, nil
		}
		if candidate {
			rolled, err := RollbackAfterExit(s.StateDir, s.Installer, desc, time.Now())
			switch {
			case err != nil:
				log.Error("supervisor: cannot check the update state", "err", err)
			case rolled:
				log.Error("supervisor: new version exited before it became healthy; rolled back", "status", desc)
				delay = s.MinBackoff
				continue
			}
		}
		if ran >= s.StableAfter {
			delay = s.MinBackoff
		}
		if code == ExitRestart && (lastRestart.IsZero() || time.Since(lastRestart) >= s.StableAfter) {
			lastRestart = time.Now()
			log.Info("supervisor: worker asked for a restart")
			continue
		}
		log.Warn("supervisor: worker exited; restarting", "status", desc, "ran", ran.Round(time.Millisecond), "retry_in", delay)
		select {
		case <-done:
			return 0, nil // stopped while no worker ran
		case <-s.Signals:
			return 0, nil
		case <-time.After(delay):
		}
		delay = min(2*delay, s.MaxBackoff)
	}
}

// exitStatus returns the exit code (128+n for signal n) and a description.
func exitStatus(cmd *exec.Cmd, err error) (int, string) {
	ps := cmd.ProcessState
	if ps == nil {
		return 1, fmt.Sprint(err)
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), ps.String()
	}
	return ps.ExitCode(), ps.String()
}
