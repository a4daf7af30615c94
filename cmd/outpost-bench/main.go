// Command outpost-bench measures the Outpost hub against Debian's Mosquitto
// with the same load generator (internal/loadgen), both brokers running as
// child processes on loopback with TLS, the broker pinned to one CPU and the
// generator to another. It prints markdown tables; a run that loses a
// message reports FAILED instead of a number and makes the command exit 1.
//
// Usage: outpost-bench throughput|idle|connect|presence|store|all [flags].
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "outpost-bench:", err)
		}
		os.Exit(1)
	}
}

const usage = `usage: outpost-bench <command> [flags]

commands:
  throughput  fan-in msg/s and broker CPU per message, hub vs Mosquitto
  idle        broker memory per idle TLS connection
  connect     broker CPU per TLS connect (+ token verification on the hub)
  presence    hub: offline detection latency (frozen, killed, clean, last-will)
  store       hub/store ingest rows/s against the hub's peak msg/s
  all         all of the above (what make bench runs)
  mochi-core  serve the hub's broker core alone (the bench runs it as the
              "mochi" broker)

Run "outpost-bench <command> -h" for its flags.
`

// errFailed means some run failed (lost messages, broker died); the report
// says which.
var errFailed = errors.New("some runs failed (see FAILED in the report)")

type options struct {
	common   bench
	keep     bool
	md       string
	brokers  string
	tp       tpOpts
	tpCases  string
	idle     idleOpts
	idleN    string
	conn     connectOpts
	pres     presenceOpts
	store    storeOpts
	keepIdle uint
	keepPres uint
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	cmd := args[0]
	switch cmd {
	case "throughput", "idle", "connect", "presence", "store", "all":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	case "mochi-core":
		return runCore(ctx, args[1:], stderr)
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
	var o options
	fs := flag.NewFlagSet("outpost-bench "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.common.hubBin, "hub-bin", "bin/outpost-hub", "outpost-hub binary")
	fs.StringVar(&o.common.mosqBin, "mosquitto", "/usr/sbin/mosquitto", "mosquitto binary")
	fs.StringVar(&o.common.coreBin, "core-bin", "", "binary to run as the mochi broker instead of this one's mochi-core (e.g. upstream mochi: scripts/mochi-upstream)")
	fs.StringVar(&o.common.repo, "repo", ".", "module root (the store benchmark builds ./hub/store there)")
	fs.StringVar(&o.common.work, "work", "", "scratch directory (default: a new temporary directory)")
	fs.BoolVar(&o.keep, "keep", false, "keep the scratch directory (broker logs, databases)")
	fs.IntVar(&o.common.brokerCPU, "broker-cpu", 0, "CPU the broker is pinned to")
	fs.IntVar(&o.common.genCPU, "gen-cpu", 1, "CPU the generator is pinned to")
	noPin := fs.Bool("no-pin", false, "do not pin broker and generator")
	fs.StringVar(&o.md, "md", "", "also write the markdown report to this file")
	fs.StringVar(&o.brokers, "broker", "hub,mosquitto,mochi", "brokers to compare (comma-separated): hub, mosquitto, mochi (the hub's broker core alone; throughput only), or both (hub and mosquitto)")
	fs.Func("hub-env", "extra environment for the hub process, KEY=VALUE (repeatable; e.g. GOGC=50 for an experiment)", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("%q is not KEY=VALUE", v)
		}
		o.common.hubEnv = append(o.common.hubEnv, v)
		return nil
	})

	fs.StringVar(&o.tpCases, "cases", "qos1,qos1-sub0,qos0", "throughput cases: qos1 (QoS 1 publishes and subscriber), qos1-sub0 (QoS 0 subscriber), qos0")
	fs.IntVar(&o.tp.publishers, "publishers", 10, "throughput: publishers")
	fs.IntVar(&o.tp.inflight, "inflight", 1, "throughput: messages in flight per publisher")
	fs.IntVar(&o.tp.size, "size", 100, "throughput: payload bytes")
	fs.DurationVar(&o.tp.duration, "duration", 6*time.Second, "throughput: measured time per run")
	fs.DurationVar(&o.tp.warmup, "warmup", time.Second, "throughput: warm-up per run (not measured)")
	fs.IntVar(&o.tp.reps, "reps", 3, "throughput: repetitions per broker")
	fs.BoolVar(&o.tp.noCoalesce, "no-coalesce", false, "throughput: let paho write each packet in several TLS records")

	fs.StringVar(&o.idleN, "n", "", "idle: connection counts (default 5000,10000); connect: connects (default 2000); presence: devices (default 200)")
	fs.IntVar(&o.idle.concurrency, "idle-concurrency", 32, "idle: connections opened at once")
	fs.UintVar(&o.keepIdle, "idle-keepalive", 60, "idle: keepalive (s)")
	fs.DurationVar(&o.idle.settle, "idle-settle", 20*time.Second, "idle: longest wait for the broker's RSS to settle")
	fs.DurationVar(&o.idle.wait, "idle-wait", 25*time.Second, "idle: time the connections stay idle before RSS is sampled")
	fs.IntVar(&o.conn.concurrency, "connect-concurrency", 4, "connect: connects at once")
	fs.UintVar(&o.keepPres, "keepalive", 5, "presence: keepalive (s) of the frozen clients")
	fs.StringVar(&o.store.benchtime, "benchtime", "20000x", "store: go test -benchtime")
	fs.Float64Var(&o.store.peak, "peak", 0, "store: the hub's peak msg/s to compare with (all: measured)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	b := &o.common
	b.pin, b.log = !*noPin, stderr
	brokers, err := parseBrokers(o.brokers)
	if err != nil {
		return err
	}
	if cmd == "presence" {
		brokers = []string{kindHub}
	}
	if o.tp.cases, err = parseCases(o.tpCases); err != nil {
		return err
	}
	o.tp.brokers = brokers
	o.tp.coreLabel = "mochi core alone"
	if b.coreBin != "" {
		o.tp.coreLabel = "mochi: " + filepath.Base(b.coreBin)
	}
	o.idle.brokers = slices.DeleteFunc(slices.Clone(brokers), func(k string) bool { return k == kindCore })
	o.conn.brokers = o.idle.brokers
	o.idle.keepalive, o.pres.keepalive = uint16(o.keepIdle), uint16(o.keepPres)
	o.idle.counts, o.conn.n, o.pres.n = []int{5000, 10000}, 2000, 200
	if o.idleN != "" {
		ns, err := parseInts(o.idleN)
		if err != nil {
			return err
		}
		o.idle.counts, o.conn.n, o.pres.n = ns, ns[0], ns[0]
	}
	if o.tp.reps < 1 || o.tp.publishers < 1 || o.tp.inflight < 1 || o.conn.concurrency < 1 || o.idle.concurrency < 1 {
		return errors.New("reps, publishers, inflight and concurrencies must be ≥ 1")
	}
	if err := checkBinaries(b, brokers, cmd); err != nil {
		return err
	}
	if err := b.setup(); err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(b.work)
	} else {
		b.progress("scratch directory: %s", b.work)
	}

	rep := &report{}
	rep.section("Machine", b.machine())
	var tps []target
	if cmd == "throughput" || cmd == "all" {
		s := b.throughput(ctx, o.tp)
		rep.section("Throughput (fan-in)", s.markdown())
		tps = append(tps, s.targets()...)
		rep.failed = rep.failed || s.failed()
		if o.store.peak == 0 {
			o.store.peak = s.hubPeak()
		}
	}
	if cmd == "idle" || cmd == "all" {
		s := b.idle(ctx, o.idle)
		rep.section("Memory per idle TLS connection", s.markdown())
		tps = append(tps, s.targets()...)
		rep.failed = rep.failed || s.failed()
	}
	if cmd == "connect" || cmd == "all" {
		s := b.connect(ctx, o.conn)
		rep.section("TLS connect + token verification", s.markdown())
		tps = append(tps, s.targets()...)
		rep.failed = rep.failed || s.failed()
	}
	if (cmd == "presence" || cmd == "all") && contains(brokers, kindHub) {
		s := b.presence(ctx, o.pres)
		rep.section("Presence", s.markdown())
		tps = append(tps, s.targets()...)
		rep.failed = rep.failed || s.err != nil
	}
	if cmd == "store" || cmd == "all" {
		s := b.store(ctx, o.store)
		rep.section("Store ingest", s.markdown())
		tps = append(tps, s.targets()...)
		rep.failed = rep.failed || s.err != nil
	}
	body := targetTable(tps)
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(load)); len(f) >= 3 {
			body += fmt.Sprintf("\nLoad average at the end: %s.\n", strings.Join(f[:3], " "))
		}
	}
	rep.section("Targets", body)
	out := rep.String()
	fmt.Fprint(stdout, out)
	if o.md != "" {
		if err := os.WriteFile(o.md, []byte(out), 0o644); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if rep.failed {
		return errFailed
	}
	return nil
}

type report struct {
	sb     strings.Builder
	failed bool
}

func (r *report) section(title, body string) {
	fmt.Fprintf(&r.sb, "## %s\n\n%s\n", title, strings.TrimRight(body, "\n")+"\n")
}

func (r *report) String() string { return r.sb.String() }

func (s *tpSummary) failed() bool {
	for _, c := range s.cells {
		if c.err != nil {
			return true
		}
	}
	return false
}

func (s *idleSummary) failed() bool {
	for _, r := range s.runs {
		if r.err != nil {
			return true
		}
	}
	return false
}

func (s *connectSummary) failed() bool {
	for _, r := range s.runs {
		if r.err != nil {
			return true
		}
	}
	return false
}

func parseBrokers(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		switch f = strings.TrimSpace(f); f {
		case kindHub, kindMosquitto, kindCore:
			if !contains(out, f) {
				out = append(out, f)
			}
		case "both":
			return []string{kindHub, kindMosquitto}, nil
		default:
			return nil, fmt.Errorf("--broker %q: want hub, mosquitto, mochi or both", f)
		}
	}
	return out, nil
}

func parseCases(s string) ([]tpCase, error) {
	var out []tpCase
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		found := false
		for _, c := range allTPCases {
			if c.name == f {
				out, found = append(out, c), true
			}
		}
		if !found {
			return nil, fmt.Errorf("--cases: unknown case %q (want qos1, qos1-sub0 or qos0)", f)
		}
	}
	return out, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--n: %q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func checkBinaries(b *bench, brokers []string, cmd string) error {
	var errs []error
	if contains(brokers, kindHub) || cmd == "store" || cmd == "all" {
		if err := absExisting(&b.hubBin); err != nil {
			errs = append(errs, fmt.Errorf("hub binary: %w (run make build)", err))
		}
	}
	if contains(brokers, kindMosquitto) {
		if _, err := os.Stat(b.mosqBin); err != nil {
			errs = append(errs, fmt.Errorf("mosquitto: %w (scripts/deps.sh installs it)", err))
		}
	}
	if b.coreBin != "" {
		if err := absExisting(&b.coreBin); err != nil {
			errs = append(errs, fmt.Errorf("--core-bin: %w", err))
		}
	}
	abs, err := filepath.Abs(b.repo)
	if err != nil {
		errs = append(errs, err)
	}
	b.repo = abs
	return errors.Join(errs...)
}

// absExisting makes *path absolute (the brokers run in their own
// directories) and checks that it exists.
func absExisting(path *string) error {
	abs, err := filepath.Abs(*path)
	if err != nil {
		return err
	}
	*path = abs
	_, err = os.Stat(abs)
	return err
}
