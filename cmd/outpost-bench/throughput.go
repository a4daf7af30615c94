package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/outpost-iot/outpost/internal/loadgen"
)

// tpCase is one throughput configuration.
type tpCase struct {
	name        string
	qos, subQoS byte
}

var allTPCases = []tpCase{
	{"qos1", 1, 1},
	{"qos1-sub0", 1, 0},
	{"qos0", 0, 0},
}

func (c tpCase) describe() string {
	return fmt.Sprintf("QoS %d publishes, QoS %d subscriber", c.qos, c.subQoS)
}

type tpOpts struct {
	brokers    []string
	cases      []tpCase
	publishers int
	inflight   int
	size       int
	duration   time.Duration
	warmup     time.Duration
	reps       int
	noCoalesce bool
	coreLabel  string // the mochi broker's name in the report
}

// tpRun is one measured run.
type tpRun struct {
	res     loadgen.Result
	cpu     time.Duration // broker CPU during the measured run
	gen     time.Duration // generator CPU during the measured run
	wall    time.Duration // wall time of the CPU window
	stored  int64         // hub: records stored during warm-up + run
	commits int64         // hub: group commits during warm-up + run
}

func (r tpRun) cpuPerMsg() float64 {
	return float64(r.cpu.Nanoseconds()) / 1e3 / float64(r.res.Acked)
}

// perCommit tells the hub's records per group commit ("" for Mosquitto).
func (r tpRun) perCommit() string {
	if r.commits == 0 {
		return ""
	}
	return fmt.Sprintf(", %.1f records per commit", float64(r.stored)/float64(r.commits))
}

// tpCell is one case × broker over the repetitions.
type tpCell struct {
	runs []tpRun
	err  error
}

// tpSummary is what the throughput scenario tells the targets and the
// store comparison.
type tpSummary struct {
	cells map[string]*tpCell // case/broker
	opts  tpOpts
}

func (s *tpSummary) cell(c tpCase, broker string) *tpCell {
	k := c.name + "/" + broker
	if s.cells[k] == nil {
		s.cells[k] = &tpCell{}
	}
	return s.cells[k]
}

func (b *bench) throughput(ctx context.Context, o tpOpts) *tpSummary {
	s := &tpSummary{cells: map[string]*tpCell{}, opts: o}
	for _, c := range o.cases {
		for rep := range o.reps {
			order := o.brokers
			if rep%2 == 1 { // alternate which broker goes first
				order = reversed(order)
			}
			for _, kind := range order {
				cell := s.cell(c, kind)
				if cell.err != nil || ctx.Err() != nil {
					continue // a failed cell has no number; do not spend time on it
				}
				r, err := b.tpOnce(ctx, kind, c, o)
				if err != nil {
					cell.err = fmt.Errorf("run %d: %w", rep+1, err)
					b.progress("throughput %s %s run %d: FAILED: %v", c.name, kind, rep+1, err)
					continue
				}
				cell.runs = append(cell.runs, r)
				b.progress("throughput %s %s run %d: %.0f msg/s, %.1f µs CPU/msg, broker %.0f%% generator %.0f%% CPU, %s%s",
					c.name, kind, rep+1, r.res.Rate, r.cpuPerMsg(), pct(r.cpu, r.wall), pct(r.gen, r.wall), r.res.Latency, r.perCommit())
			}
		}
	}
	return s
}

func reversed(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

func pct(cpu, wall time.Duration) float64 {
	if wall <= 0 {
		return 0
	}
	return 100 * cpu.Seconds() / wall.Seconds()
}

func (b *bench) tpOnce(ctx context.Context, kind string, c tpCase, o tpOpts) (tpRun, error) {
	br, err := b.startBroker(ctx, kind)
	if err != nil {
		return tpRun{}, err
	}
	defer br.stop()
	cfg := loadgen.Config{Addr: br.addr, TLS: b.tlsConfig(), Token: br.token,
		Publishers: o.publishers, InFlight: o.inflight, QoS: c.qos, SubQoS: c.subQoS, PayloadSize: o.size,
		Subscribers: 1, Duration: o.duration, NoCoalesce: o.noCoalesce}
	g, err := loadgen.Connect(ctx, cfg)
	if err != nil {
		return tpRun{}, err
	}
	defer g.Close()
	var warm loadgen.Result
	if o.warmup > 0 {
		if warm, err = g.RunFor(ctx, o.warmup, 0); err != nil {
			return tpRun{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	cpu0, err1 := cpuTime(br.pid())
	gen0, err2 := cpuTime(os.Getpid())
	t0 := time.Now()
	res, err := g.Run(ctx)
	wall := time.Since(t0)
	cpu1, err3 := cpuTime(br.pid())
	gen1, err4 := cpuTime(os.Getpid())
	if err != nil {
		return tpRun{res: res}, errors.Join(err, br.alive())
	}
	if err := errors.Join(err1, err2, err3, err4, br.alive()); err != nil {
		return tpRun{}, err
	}
	r := tpRun{res: res, cpu: cpu1 - cpu0, gen: gen1 - gen0, wall: wall}
	if kind == kindHub {
		// Every acknowledged (QoS 0: delivered) log batch must be in the hub's
		// store. QoS 0 batches are committed after delivery (no PUBACK waits
		// for them): give the last group commit a moment.
		want := int64(warm.Acked + res.Acked)
		for deadline := time.Now().Add(3 * time.Second); ; {
			m, err := b.metrics(br, "outpost_store_records_total", "outpost_store_commit_seconds_count")
			if err != nil {
				return r, fmt.Errorf("hub metrics: %w", err)
			}
			r.stored, r.commits = int64(m["outpost_store_records_total"]), int64(m["outpost_store_commit_seconds_count"])
			if r.stored == want || c.qos > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if r.stored != want {
			return r, fmt.Errorf("%w: hub stored %d records, acknowledged %d", loadgen.ErrLoss, r.stored, want)
		}
	}
	return r, nil
}

// medians of one cell.
type tpMedians struct {
	n                    int
	rate, cpuMsg, cpuPct float64
	genPct               float64
	p50, p99             time.Duration
	rates                []string
}

func (cell *tpCell) medians() tpMedians {
	var m tpMedians
	var rates, cpus, cpct, gpct []float64
	var p50, p99 []time.Duration
	for _, r := range cell.runs {
		rates = append(rates, r.res.Rate)
		cpus = append(cpus, r.cpuPerMsg())
		cpct = append(cpct, pct(r.cpu, r.wall))
		gpct = append(gpct, pct(r.gen, r.wall))
		p50 = append(p50, r.res.Latency.P50)
		p99 = append(p99, r.res.Latency.P99)
		m.rates = append(m.rates, fmt.Sprintf("%.0f", r.res.Rate))
	}
	m.n = len(cell.runs)
	m.rate, m.cpuMsg, m.cpuPct, m.genPct = median(rates), median(cpus), median(cpct), median(gpct)
	m.p50, m.p99 = medianDur(p50), medianDur(p99)
	return m
}

func (s *tpSummary) markdown() string {
	o := s.opts
	var sb strings.Builder
	fmt.Fprintf(&sb, "%d publishers × %d in flight, %d B payloads (valid log batches, the same bytes to both brokers), 1 subscriber on `outpost/v1/d/+/log`, TLS 1.3 on both; "+
		"%v per run after a %v warm-up, fresh broker per run, brokers alternated, %d repetitions, medians. "+
		"QoS 1: in flight = not yet PUBACKed; QoS 0: in flight = not yet delivered to the subscriber (closed loop). "+
		"Broker CPU is utime+stime of the broker process over the run, per acknowledged message. Latency: QoS 1 publish → PUBACK, QoS 0 publish → delivery.\n\n",
		o.publishers, o.inflight, o.size, o.duration, o.warmup, o.reps)
	for _, c := range o.cases {
		fmt.Fprintf(&sb, "**%s** (`%s`)\n\n", c.describe(), c.name)
		t := table{head: []string{"broker", "msg/s", "broker CPU µs/msg", "broker CPU", "generator CPU", "latency p50", "latency p99", "runs (msg/s)"}}
		for _, kind := range o.brokers {
			cell := s.cell(c, kind)
			if cell.err != nil {
				t.add(kind, "**FAILED**", "–", "–", "–", "–", "–", oneLine(cell.err.Error()))
				continue
			}
			m := cell.medians()
			if m.n == 0 {
				t.add(kind, "–", "–", "–", "–", "–", "–", "not run")
				continue
			}
			label := kind
			if kind == kindCore {
				label = o.coreLabel
			}
			t.add(label, fmt.Sprintf("%.0f", m.rate), fmt.Sprintf("%.1f", m.cpuMsg), fmt.Sprintf("%.0f %%", m.cpuPct),
				fmt.Sprintf("%.0f %%", m.genPct), fmtDur(m.p50), fmtDur(m.p99), strings.Join(m.rates, ", "))
		}
		sb.WriteString(t.String())
		if r, ok := s.ratio(c, kindHub, kindMosquitto); ok {
			fmt.Fprintf(&sb, "\nhub / Mosquitto: throughput **%.2f×**, CPU per message **%.2f×**\n", r.rate, r.cpu)
		}
		if r, ok := s.ratio(c, kindCore, kindMosquitto); ok {
			fmt.Fprintf(&sb, "\n%s / Mosquitto: throughput %.2f×, CPU per message %.2f×\n", o.coreLabel, r.rate, r.cpu)
		}
		if r, ok := s.ratio(c, kindHub, kindCore); ok {
			fmt.Fprintf(&sb, "\nhub / %s: throughput %.2f×, CPU per message %.2f× (what token auth, ACL, presence and the store add)\n", o.coreLabel, r.rate, r.cpu)
		}
		sb.WriteString("\n")
	}
	return sb.String()
}

type tpRatio struct{ rate, cpu float64 }

// ratio is broker a's medians over broker b's.
func (s *tpSummary) ratio(c tpCase, a, b string) (tpRatio, bool) {
	h, m := s.cell(c, a), s.cell(c, b)
	if h.err != nil || m.err != nil || len(h.runs) == 0 || len(m.runs) == 0 {
		return tpRatio{}, false
	}
	hm, mm := h.medians(), m.medians()
	return tpRatio{rate: hm.rate / mm.rate, cpu: hm.cpuMsg / mm.cpuMsg}, true
}

// hubPeak is the hub's highest median rate over the cases (0 if none).
func (s *tpSummary) hubPeak() float64 {
	var peak float64
	for _, c := range s.opts.cases {
		if cell := s.cell(c, kindHub); cell.err == nil && len(cell.runs) > 0 {
			peak = max(peak, cell.medians().rate)
		}
	}
	return peak
}

func (s *tpSummary) targets() []target {
	var ts []target
	for _, c := range s.opts.cases {
		h := s.cell(c, kindHub)
		what := fmt.Sprintf("throughput, %s", c.describe())
		switch r, ok := s.ratio(c, kindHub, kindMosquitto); {
		case h.err != nil:
			ts = append(ts, target{what, "≥ 1.0× Mosquitto, CPU/msg ≤ 1.0×", "hub run failed", ptr(false)})
		case ok:
			ts = append(ts, target{what, "≥ 1.0× Mosquitto, CPU/msg ≤ 1.0×",
				fmt.Sprintf("%.2f× msg/s, %.2f× CPU/msg", r.rate, r.cpu), ptr(r.rate >= 1.0 && r.cpu <= 1.0)})
		default:
			ts = append(ts, target{what, "≥ 1.0× Mosquitto, CPU/msg ≤ 1.0×", "no comparison", nil})
		}
	}
	return ts
}
