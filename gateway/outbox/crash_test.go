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

	"github.com/outpost-iot/outpost/internal/sqlitex"
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
// (mid-commit, mid-reservation, mid-Append) and checks after each kill that
// every unacknowledged record the child appended is there, intact, whether
// it was committed or only buffered (the journal); that nothing is there
// that the child did not append; that no range is reported as possibly
// lost; and that the seqs continue right after the last one handed out,
// without a gap and without reusing one.
func TestCrashRecovery(t *testing.T) {
	testCrashRecovery(t, false)
}

// TestCrashRecoveryAfterReboot is TestCrashRecovery with a new boot id at
// each reopen, as after a power cut: the journal then may have lost its
// tail with the page cache, so the outbox keeps what the journal holds,
// reports the seqs above it up to the reservation as possibly lost, and
// continues above the reservation. (Here the page cache survives, so the
// journal is whole and nothing is lost.)
func TestCrashRecoveryAfterReboot(t *testing.T) {
	testCrashRecovery(t, true)
}

func testCrashRecovery(t *testing.T, reboot bool) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	var opts Options
	if reboot {
		boots := 0
		opts.bootID = func() string { boots++; return fmt.Sprintf("boot-%d", boots) }
	}
	path := filepath.Join(t.TempDir(), "outbox.db")
	var (
		assigned = map[uint64]bool{} // every seq any child handed out
		acked    = map[uint64]bool{}
		kept     = map[uint64]bool{} // stored, unacknowledged: must stay
		highest  uint64              // the greatest seq handed out
		un0      DropRange           // Stats.Unreported after the previous round
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

		o, err := Open(bg, path, opts)
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		prevUn := un0
		recs := all(t, o)
		stored := map[uint64]bool{}
		for _, r := range recs {
			if r.Value == nil || *r.Value != float64(r.Seq) {
				t.Fatalf("round %d: seq %d holds value %v, want %d", round, r.Seq, r.Value, r.Seq)
			}
			if !assigned[r.Seq] {
				// An Append that completed (journalled) but whose line the
				// kill cut off: the child's next seq, value and all.
				if r.Seq != highest+1 {
					t.Fatalf("round %d: stored seq %d was never assigned (child's last: %d)", round, r.Seq, highest)
				}
				assigned[r.Seq], highest = true, r.Seq
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
		for seq := range assigned {
			if stored[seq] && !acked[seq] {
				kept[seq] = true
			}
			if !stored[seq] && !acked[seq] {
				// Committed or only buffered, the journal kept it.
				t.Fatalf("round %d: seq %d was appended and not acknowledged, but is lost", round, seq)
			}
		}
		st := o.Stats()
		un := st.Unreported
		if st.LastSeq < highest || st.Depth != int64(len(recs)) {
			t.Fatalf("round %d: stats %+v after reopen, want last seq ≥ %d (every seq handed out) and depth %d", round, st, highest, len(recs))
		}
		seq := mustAppend(t, o, reading("s0", 0, t0))
		switch {
		case seq <= highest:
			t.Fatalf("round %d: first seq after the crash is %d, not above %d, the greatest seq the child handed out", round, seq, highest)
		case !reboot && seq != highest+1:
			t.Fatalf("round %d: first seq after the crash is %d, want %d: a gap after a crash the journal recorded whole", round, seq, highest+1)
		case !reboot && un != prevUn:
			t.Fatalf("round %d: a crash the journal recorded whole was reported as a loss: %+v (before: %+v)", round, un, prevUn)
		case reboot && (!strings.Contains(un.Reasons, "crash") || un.First > highest+1 || un.Last < seq-1 ||
			prevUn.Count == 0 && un.First != highest+1):
			// Above every record the journal held, up to the reservation,
			// whose last seq the next one follows (merged with the range of
			// the previous round, not reported here).
			t.Fatalf("round %d: after a reboot the range %+v should cover %d..%d (journal's last + 1 .. reservation)", round, un, highest+1, seq-1)
		}
		un0 = un
		assigned[seq], acked[seq], highest = true, true, seq
		if err := o.Ack(bg, seq); err != nil { // keep the stored values equal to their seqs
			t.Fatal(err)
		}
		if err := o.Close(bg); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: killed after %d assigned (seqs %d..%d), %d acked, commits confirmed up to seq %d; %d records kept (%d from the journal); next seq %d, unreported %+v",
			round, len(run.assigned), run.assigned[0], run.assigned[len(run.assigned)-1], len(run.acked), run.committed, len(recs), st.Recovered, seq, un)
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

// A journal is trusted only if its run was the last to reserve seqs: here,
// after the child's kill, another process (a rolled-back firmware without
// a journal, say) opened the database and reserved a block, and may have
// handed out seqs the journal does not know. The outbox must then report
// the range and continue above the reservation, not right after the
// journal's last seq.
func TestCrashJournalOfAnotherRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	path := filepath.Join(t.TempDir(), "outbox.db")
	run, err := runAndKill(t, path, 37)
	if err != nil {
		t.Fatal(err)
	}
	highest := run.assigned[len(run.assigned)-1]
	db, err := sqlitex.Open(bg, path, sqlitex.Options{FullSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var reserved uint64
	if err := db.QueryRow(`SELECT last_seq FROM meta WHERE id = 1`).Scan(&reserved); err != nil {
		t.Fatal(err)
	}
	reserved += reserveBlock // the other process's reservation
	if _, err := db.Exec(`UPDATE meta SET last_seq = ? WHERE id = 1`, reserved); err != nil {
		t.Fatal(err)
	}
	db.Close()

	o := openT(t, path, Options{})
	st := o.Stats()
	// What the journal held is kept all the same.
	stored := map[uint64]bool{}
	for _, r := range all(t, o) {
		stored[r.Seq] = true
		// The kill can land after a record was appended (and committed)
		// and before the child printed "assigned": what is stored was
		// assigned too.
		highest = max(highest, r.Seq)
	}
	highest = max(highest, st.CommittedSeq)
	if st.LastSeq != reserved || !strings.Contains(st.Unreported.Reasons, "crash") || st.Unreported.Last != reserved || st.Unreported.First > highest+1 {
		t.Fatalf("after another run reserved up to %d: %+v; want the journal distrusted (range from at most %d up to %d reported, last seq %d)", reserved, st, highest+1, reserved, reserved)
	}
	acked := map[uint64]bool{}
	for _, s := range run.acked {
		acked[s] = true
	}
	for _, s := range run.assigned {
		if !stored[s] && !acked[s] {
			t.Fatalf("seq %d, appended and not acknowledged, is lost", s)
		}
	}
}
