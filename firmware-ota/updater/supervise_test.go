package updater

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/internal/protocol"
)

// The test binary plays the worker when UPDATER_TEST_WORKER is set: copies
// of it with a version trailer appended stand for gateway versions.
func TestMain(m *testing.M) {
	if os.Getenv("UPDATER_TEST_WORKER") != "" {
		os.Exit(testWorker())
	}
	os.Exit(m.Run())
}

const trailer = "\nOUTPOST-TEST-VERSION="

// testWorker acts as the version named in its own executable's trailer,
// as UPDATER_TEST_MODE_<version> says, logging to UPDATER_TEST_LOG.
func testWorker() int {
	exe, err := os.Executable()
	if err != nil {
		return 90
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		return 91
	}
	i := bytes.LastIndex(b, []byte(trailer))
	if i < 0 {
		return 92
	}
	v := strings.TrimSpace(string(b[i+len(trailer):]))
	logf := func(format string, args ...any) {
		f, err := os.OpenFile(os.Getenv("UPDATER_TEST_LOG"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err == nil {
			fmt.Fprintf(f, format+"\n", args...)
			_ = f.Close()
		}
	}
	// The handler first: the test sends SIGTERM as soon as it sees "start",
	// and without a handler the worker dies of it (exit status 143).
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	logf("start %s", v)
	switch mode := os.Getenv("UPDATER_TEST_MODE_" + v); mode {
	case "swap-and-restart": // install the next binary by rename, ask for a restart
		if err := os.Rename(os.Getenv("UPDATER_TEST_NEXT"), exe); err != nil {
			logf("swap: %v", err)
			return 1
		}
		return ExitRestart
	case "crash":
		return 2
	case "fail": // exit 1 at once, every time
		return 1
	case "crash-in-trial": // count the trial start, then die
		if _, err := New(Config{StateDir: os.Getenv("UPDATER_TEST_STATE"), Version: v,
			Installer: FileInstaller{Path: exe}, Reporter: ReporterFunc(func(context.Context, protocol.OTAStatus) error { return nil })}); err != nil {
			logf("new: %v", err)
		}
		return 3
	case "serve": // run the updater, log its reports, stop on SIGTERM
		rep := ReporterFunc(func(_ context.Context, st protocol.OTAStatus) error {
			logf("report %s fw=%s reason=%s", st.State, st.Firmware, st.Reason)
			return nil
		})
		u, err := New(Config{StateDir: os.Getenv("UPDATER_TEST_STATE"), Version: v, Installer: FileInstaller{Path: exe}, Reporter: rep})
		if err != nil {
			logf("new: %v", err)
			return 1
		}
		err = u.Run(ctx)
		logf("stopped %v", err)
		if err != nil {
			return ExitRestart
		}
		return 0
	default: // wait for SIGTERM
		<-ctx.Done()
		logf("terminated")
		return 0
	}
}

// version writes a copy of the test binary that plays version v.
func version(t *testing.T, path, v string) []byte {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, trailer+v+"\n"...)
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return b
}

type superviseEnv struct {
	dir, bin, log, state string
	sup                  *Supervisor
	sigs                 chan os.Signal
	done                 chan struct{}
	code                 int
	err                  error
}

func newSupervise(t *testing.T, modes map[string]string) *superviseEnv {
	if runtime.GOOS != "linux" {
		t.Skip("supervisor tests use Linux process semantics")
	}
	dir := t.TempDir()
	s := &superviseEnv{dir: dir, bin: filepath.Join(dir, "bin", "gw"), log: filepath.Join(dir, "log"), state: filepath.Join(dir, "ota"),
		sigs: make(chan os.Signal, 1), done: make(chan struct{})}
	if err := os.MkdirAll(filepath.Dir(s.bin), 0o755); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "UPDATER_TEST_WORKER=1", "UPDATER_TEST_LOG="+s.log, "UPDATER_TEST_STATE="+s.state,
		"UPDATER_TEST_NEXT="+s.bin+".next")
	for v, m := range modes {
		env = append(env, "UPDATER_TEST_MODE_"+v+"="+m)
	}
	s.sup = &Supervisor{Path: s.bin, StateDir: s.state, Signals: s.sigs, Env: env, MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond, Stdout: io.Discard, Stderr: os.Stderr, Logger: testLogger(t)}
	return s
}

func (s *superviseEnv) start(t *testing.T) {
	go func() { s.code, s.err = s.sup.Run(context.Background()); close(s.done) }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			s.sigs <- syscall.SIGKILL
			<-s.done
		}
	})
}

func (s *superviseEnv) lines() []string {
	b, _ := os.ReadFile(s.log)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func (s *superviseEnv) waitLine(t *testing.T, line string) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("log line %q", line), func() bool {
		for _, l := range s.lines() {
			if strings.HasPrefix(l, line) {
				return true
			}
		}
		return false
	})
}

func (s *superviseEnv) stop(t *testing.T) int {
	t.Helper()
	s.sigs <- syscall.SIGTERM
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		t.Fatal("supervisor did not stop")
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.code
}

// A worker that exits 75 is started again at once, from the binary now at
// the path; signals are forwarded and the supervisor exits with the worker.
func TestSupervisorRestartsIntoSwappedBinary(t *testing.T) {
	s := newSupervise(t, map[string]string{"1.0.0": "swap-and-restart", "2.0.0": "wait"})
	version(t, s.bin, "1.0.0")
	version(t, s.bin+".next", "2.0.0")
	s.sup.StateDir = ""
	began := time.Now()
	s.start(t)
	s.waitLine(t, "start 2.0.0")
	if d := time.Since(began); d > 10*time.Second {
		t.Fatalf("restart took %v", d)
	}
	if code := s.stop(t); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	if got := strings.Join(s.lines(), "|"); got != "start 1.0.0|start 2.0.0|terminated" {
		t.Fatalf("worker log: %s", got)
	}
}

// A worker that keeps failing is restarted with a growing delay.
func TestSupervisorBacksOff(t *testing.T) {
	s := newSupervise(t, map[string]string{"1.0.0": "fail"})
	version(t, s.bin, "1.0.0")
	began := time.Now()
	s.start(t)
	waitFor(t, 30*time.Second, "four starts", func() bool { return len(s.lines()) >= 4 })
	// At least 20+40+80 ms of backoff between the four starts.
	if d := time.Since(began); d < 140*time.Millisecond {
		t.Fatalf("four starts within %v: no backoff", d)
	}
	if code := s.stop(t); code != 0 && code != 1 {
		t.Fatalf("exit status %d", code)
	}
}

// A new version that exits before it became healthy is rolled back by the
// supervisor at once, and the previous version reports why.
func TestSupervisorRollsBackNewVersionThatExits(t *testing.T) {
	for _, tc := range []struct{ mode, status string }{
		{"crash", "exit status 2"},          // before the updater even started
		{"crash-in-trial", "exit status 3"}, // after it counted its trial start
		{"not-executable", "could not start: fork/exec"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			s := newSupervise(t, map[string]string{"2.0.0": tc.mode, "1.0.0": "serve"})
			v1 := version(t, s.bin+".prev", "1.0.0")
			v2 := version(t, s.bin, "2.0.0")
			if tc.mode == "not-executable" {
				v2 = []byte("\x00\x01 not a program")
				if err := os.WriteFile(s.bin, v2, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			sum := sha256.Sum256(v2)
			if err := os.MkdirAll(s.state, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := WriteState(s.state, State{Phase: Restarting, Seq: 5, Rollout: "r1", Release: "2.0.0", From: "1.0.0",
				SHA256: hex.EncodeToString(sum[:]), Total: int64(len(v2)), Bytes: int64(len(v2)), Changed: time.Now()}); err != nil {
				t.Fatal(err)
			}
			s.start(t)
			want := "report rolled_back fw=1.0.0 reason=version 2.0.0 exited (" + tc.status
			s.waitLine(t, want)
			if code := s.stop(t); code != 0 {
				t.Fatalf("exit status %d", code)
			}
			if b, _ := os.ReadFile(s.bin); !bytes.Equal(b, v1) {
				t.Fatal("the previous binary is not back in place")
			}
			lines := strings.Join(s.lines(), "|")
			if tc.mode != "not-executable" && !strings.HasPrefix(lines, "start 2.0.0|start 1.0.0|") ||
				tc.mode == "not-executable" && !strings.HasPrefix(lines, "start 1.0.0|") {
				t.Fatalf("worker log: %s", lines)
			}
			st, err := ReadState(s.state)
			if err != nil || st.Phase != RolledBack || st.Report != nil {
				t.Fatalf("state %+v, %v", st, err)
			}
		})
	}
}
