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
// readings whose value is the seq it expects them to get and prints
// "assigned <seq>" for each; it acknowledges every fifth one at once, as
// the uplink does with a record it published from the buffer ("acked
// <seq>"); it flushes every seven records and, after each Flush returned,
// prints "committed <seq>". It runs until it is killed.
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
		fmt.Printf("assigned %d\n", seq) // os.Stdout is unbuffered
		next++
		if i%5 == 4 {
			if err := o.Ack(bg, seq); err != nil {
				fmt.Printf("error ack: %v\n", err)
				os.Exit(2)
			}
			fmt.Printf("acked %d\n", seq)
		}
		if i%7 == 6 {
			if err := o.Flush(bg); err != nil {
				fmt.Printf("error flush: %v\n", err)
				os.Exit(2)
			}
			fmt.Printf("committed %d\n", seq)
		}
	}
}

// TestCrashRecovery kills a writer process with SIGKILL at arbitrary points
// (mid-commit, or mid-reservation) and checks after each
// kill that every unacknowledged record whose Flush returned is stored,
// intact; that nothing is stored that the child did not assign; and that
// the seqs assigned after the restart start above every seq the child ever
// handed out, so a record published from the buffer before the crash (and
// lost with it) can never clash with a new record at the hub.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	path := filepath.Join(t.TempDir(), "outbox.db")
	var (
		assigned = map[uint64]bool{} // every seq any child handed out
		acked    = map[uint64]bool{}
		kept     = map[uint64]bool{} // stored, unacknowledged: must stay
		highest  uint64              // the greatest seq handed out
	)
	for round := range 4 {
		// Kill after a varying number of confirmed commits; the later
		// rounds cross reservation blocks (reserveBlock seqs).
		target := highest + uint64(37+500*round)
		run, err := runAndKill(t, path, target)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if len(run.assigned) == 0 || run.assigned[0] <= highest {
			t.Fatalf("round %d: the child's first seq is not above %d, the greatest seq handed out before", round, highest)
		}
		for _, seq := range run.assigned {
			if assigned[seq] {
				t.Fatalf("round %d: seq %d assigned twice", round, seq)
			}
			assigned[seq] = true
			highest = max(highest, seq)
		}
		for _, seq := range run.acked {
			acked[seq] = true
		}

		o, err := Open(bg, path, Options{})
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		recs := all(t, o)
		stored := map[uint64]bool{}
		for _, r := range recs {
			if !assigned[r.Seq] {
				t.Fatalf("round %d: stored seq %d was never assigned", round, r.Seq)
			}
			if r.Value == nil || *r.Value != float64(r.Seq) {
				t.Fatalf("round %d: seq %d holds value %v, want %d", round, r.Seq, r.Value, r.Seq)
			}
			stored[r.Seq] = true
		}
		// Committed and not acknowledged: must be there. (An acknowledged
		// record may be there too: its delete may not have been committed.)
		for _, seq := range run.assigned {
			if seq <= run.committed && !acked[seq] && !stored[seq] {
				t.Fatalf("round %d: seq %d was committed (confirmed up to %d) and not acknowledged, but is not stored", round, seq, run.committed)
			}
		}
		for seq := range kept {
			if !stored[seq] {
				t.Fatalf("round %d: seq %d, stored after the previous round, is gone", round, seq)
			}
		}
		lost := 0
		for _, seq := range run.assigned {
			switch {
			case stored[seq] && !acked[seq]:
				kept[seq] = true
			case !stored[seq] && !acked[seq]:
				lost++ // buffered, unpublished: the crash window
			}
		}
		st := o.Stats()
		// Every record lost in the crash window is in the range reported
		// as possibly lost.
		un := st.Unreported
		for _, seq := range run.assigned {
			if !stored[seq] && !acked[seq] && (un.First > seq || un.Last < seq || !strings.Contains(un.Reasons, "crash")) {
				t.Fatalf("round %d: seq %d was lost in the crash, but the unreported range is %+v", round, seq, un)
			}
		}
		if st.LastSeq < highest || st.Depth != int64(len(recs)) {
			t.Fatalf("round %d: stats %+v after reopen, want last seq ≥ %d (every seq handed out) and depth %d", round, st, highest, len(recs))
		}
		seq := mustAppend(t, o, reading("s0", 0, t0))
		if seq <= highest {
			t.Fatalf("round %d: first seq after the crash is %d, not above %d, the greatest seq the child handed out", round, seq, highest)
		}
		assigned[seq], acked[seq], highest = true, true, seq
		if err := o.Ack(bg, seq); err != nil { // keep the stored values equal to their seqs
			t.Fatal(err)
		}
		if err := o.Close(bg); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: killed after %d assigned (seqs %d..%d), %d acked, commits confirmed up to seq %d; %d records stored, %d lost unpublished; next seq %d",
			round, len(run.assigned), run.assigned[0], run.assigned[len(run.assigned)-1], len(run.acked), run.committed, len(recs), lost, seq)
	}
}

// childRun is what a TestCrashChild process reported before it was killed.
type childRun struct {
	assigned  []uint64 // in order
	acked     []uint64
	committed uint64 // the last seq confirmed committed
}

// runAndKill runs TestCrashChild on path until it confirmed a commit of at
// least target, lets it run a moment longer, kills it with SIGKILL and
// returns what it reported.
func runAndKill(t *testing.T, path string, target uint64) (childRun, error) {
	t.Helper()
	var run childRun
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return run, err
	}
	if err := cmd.Start(); err != nil {
		return run, err
	}
	var (
		killed bool
		lines  int
	)
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if msg, ok := strings.CutPrefix(line, "error "); ok {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return run, fmt.Errorf("child: %s", msg)
		}
		what, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		seq, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			continue
		}
		switch what {
		case "assigned":
			run.assigned = append(run.assigned, seq)
		case "acked":
			run.acked = append(run.acked, seq)
		case "committed":
			run.committed = seq
			if !killed && seq >= target {
				lines++
				// Let a few more commits start so the kill lands anywhere,
				// mid-transaction included; the pipe keeps the lines it has.
				if lines > int(target%5) {
					if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
						return run, err
					}
					killed = true
				}
			}
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !killed {
		return run, fmt.Errorf("child exited before it was killed: %v", err)
	}
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		return run, fmt.Errorf("child did not die of SIGKILL: %v", err)
	}
	return run, nil
}
