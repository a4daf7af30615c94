package outbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// crashEnv names the database a child process (TestCrashChild) writes to.
const crashEnv = "OUTBOX_CRASH_CHILD_DB"

// TestCrashChild is the child process of TestCrashRecovery: it appends
// readings whose value is the seq it expects them to get, flushes every few
// records and, after each Flush returned, prints "committed <seq>". It runs
// until it is killed.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("child process of TestCrashRecovery")
	}
	o, err := Open(bg, path, Options{}) // default grouping: 1 s or 256 records
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(2)
	}
	next := o.Stats().LastSeq + 1
	for i := 0; ; i++ {
		rec := reading("s"+strconv.Itoa(i%3), float64(next), time.Now().UnixMilli())
		seq, err := o.Append(bg, rec)
		if err != nil || seq != next {
			fmt.Printf("error append: seq %d, want %d: %v\n", seq, next, err)
			os.Exit(2)
		}
		next++
		if i%7 == 6 {
			if err := o.Flush(bg); err != nil {
				fmt.Printf("error flush: %v\n", err)
				os.Exit(2)
			}
			fmt.Printf("committed %d\n", seq) // os.Stdout is unbuffered
		}
	}
}

// TestCrashRecovery kills a writer process with SIGKILL at arbitrary points
// (mid-transaction included) and checks after each kill that every record
// whose Flush returned is stored, intact, that the stored seqs are exactly
// 1..N without a gap, and that the sequence continues after N.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	path := filepath.Join(t.TempDir(), "outbox.db")
	var reportedMax uint64
	for round := range 4 {
		// Kill after a varying number of confirmed commits.
		target := uint64(20 + 37*round)
		got, err := runAndKill(t, path, target)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if got <= reportedMax {
			t.Fatalf("round %d: child confirmed seq %d, not above the previous round's %d", round, got, reportedMax)
		}
		reportedMax = got

		o, err := Open(bg, path, Options{})
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		recs := all(t, o)
		n := uint64(len(recs))
		if n < reportedMax {
			t.Fatalf("round %d: %d records stored, but the child confirmed seq %d as committed", round, n, reportedMax)
		}
		for i, r := range recs {
			if r.Seq != uint64(i+1) {
				t.Fatalf("round %d: record %d has seq %d: stored seqs are not 1..%d without gaps", round, i, r.Seq, n)
			}
			if r.Value == nil || *r.Value != float64(r.Seq) {
				t.Fatalf("round %d: seq %d holds value %v, want %d", round, r.Seq, r.Value, r.Seq)
			}
		}
		if st := o.Stats(); st.LastSeq != n || st.Depth != int64(n) {
			t.Fatalf("round %d: stats %+v after reopen, want last seq and depth %d", round, st, n)
		}
		if err := o.Close(bg); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: killed after confirmed seq %d; %d records stored", round, reportedMax, n)
	}
}

// runAndKill runs TestCrashChild on path until it confirmed a commit of at
// least target, lets it run a moment longer, kills it with SIGKILL and
// returns the highest seq it confirmed.
func runAndKill(t *testing.T, path string, target uint64) (uint64, error) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	var (
		confirmed uint64
		killed    bool
		lines     int
	)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if msg, ok := strings.CutPrefix(line, "error "); ok {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return 0, fmt.Errorf("child: %s", msg)
		}
		v, ok := strings.CutPrefix(line, "committed ")
		if !ok {
			continue
		}
		seq, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			continue
		}
		confirmed = seq
		if !killed && seq >= target {
			lines++
			// Let a few more commits start so the kill lands anywhere,
			// mid-transaction included; the pipe keeps the lines it has.
			if lines > int(target%5) {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					return 0, err
				}
				killed = true
			}
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !killed {
		return 0, fmt.Errorf("child exited before it was killed: %v", err)
	}
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		return 0, fmt.Errorf("child did not die of SIGKILL: %v", err)
	}
	return confirmed, nil
}
