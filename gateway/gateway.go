// Package gateway wires the Outpost gateway together: sensors (drivers/
// catalog) sampled on their intervals, the alert rules (rules) on event time,
// the durable outbox (outbox), the uplink to the hub (uplink) and OTA
// updates (firmware-ota/updater, fed the notices on in/ota). Run owns every
// goroutine and, on shutdown, stops sampling, commits the outbox and
// disconnects cleanly; nothing taken is lost. After an update (or a
// rollback) put another binary in place, Run shuts down the same way and
// returns ErrRestart.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/host/v3"

	"github.com/outpost-iot/outpost/certs"
	"github.com/outpost-iot/outpost/drivers"
	"github.com/outpost-iot/outpost/drivers/catalog"
	"github.com/outpost-iot/outpost/firmware-ota/updater"
	"github.com/outpost-iot/outpost/gateway/outbox"
	"github.com/outpost-iot/outpost/gateway/rules"
	"github.com/outpost-iot/outpost/gateway/uplink"
	"github.com/outpost-iot/outpost/internal/protocol"
)

// Gateway is a configured gateway; Run runs it.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	version string
	clock   *Clock
	ob      *outbox.Outbox
	up      *uplink.Uplink
	sensors []drivers.Sensor
	specs   map[string]catalog.Spec
	eng     *rules.Engine
	actions *actions
	tokens  *FileTokens
	ota     *updater.Updater

	healthMu   sync.Mutex
	health     map[string]string // sensor → "ok" or fault cause
	journalOff bool              // the outbox's journal was off at the last heartbeat
}

// New opens the outbox and the sensors and prepares the uplink.
func New(ctx context.Context, cfg Config, log *slog.Logger, version string) (*Gateway, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("gateway: data dir: %w", err)
	}
	g := &Gateway{cfg: cfg, log: log, version: version, clock: NewClock(cfg.Clock.Source),
		health: map[string]string{}, specs: map[string]catalog.Spec{}}
	var err error
	if g.tokens, err = OpenFileTokens(cfg.Hub.TokenFile); err != nil {
		return nil, err
	}
	tlsCfg, err := certs.ClientTLS(cfg.Hub.CA)
	if err != nil {
		return nil, fmt.Errorf("gateway: hub.ca: %w", err)
	}
	if err := g.openOTA(tlsCfg); err != nil {
		return nil, err
	}
	if g.eng, err = rules.New(&cfg.Rules); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if g.actions, err = newActions(cfg.Actions, needsHost(cfg)); err != nil {
		return nil, err
	}
	env, err := g.env()
	if err != nil {
		return nil, err
	}
	if g.sensors, err = catalog.Open(cfg.Sensors, env); err != nil {
		return nil, fmt.Errorf("gateway: sensors: %w", err)
	}
	for _, s := range cfg.Sensors {
		g.specs[s.Name] = s.WithDefaults()
	}
	if g.ob, err = outbox.Open(ctx, filepath.Join(cfg.DataDir, "outbox.db"), outbox.Options{
		MaxRecords: cfg.Outbox.MaxRecords, MaxBytes: cfg.Outbox.MaxBytes, MaxAge: cfg.Outbox.MaxAge,
		FlushInterval: cfg.Outbox.FlushInterval, DropNotice: g.dropNotice,
	}); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if st := g.ob.Stats(); st.Recovered > 0 {
		log.Info("gateway: outbox recovered records the last run had not committed (journal)", "records", st.Recovered)
	}
	if g.up, err = uplink.New(uplink.Config{
		Broker: cfg.Hub.Address, TLS: tlsCfg, DeviceID: cfg.DeviceID,
		KeepAlive: uint16(cfg.Hub.KeepAlive / time.Second), Heartbeat: cfg.Hub.Heartbeat,
		BatchSize: cfg.Hub.BatchSize, BacklogRate: cfg.Hub.BacklogRate,
		Firmware: version, Boot: g.clock.Boot(), HeartbeatInfo: g.heartbeat, Logger: log,
		Transform: g.fixClock, OnMessage: g.onMessage,
	}, g.ob, g.tokens); err != nil {
		_ = g.ob.Close(ctx)
		return nil, err
	}
	return g, nil
}

// needsHost reports whether periph's host drivers are needed (real buses or GPIO).
func needsHost(cfg Config) bool {
	if len(cfg.Actions) > 0 {
		return true
	}
	for _, s := range cfg.Sensors {
		if s.Type != catalog.Sim {
			return true
		}
	}
	return false
}

func (g *Gateway) env() (catalog.Env, error) {
	env := catalog.Env{Logger: g.log}
	if !needsHost(g.cfg) {
		return env, nil
	}
	if _, err := host.Init(); err != nil {
		return env, fmt.Errorf("gateway: periph host init: %w", err)
	}
	var mu sync.Mutex
	buses := map[string]i2c.BusCloser{}
	env.I2C = func(name string) (i2c.Bus, error) {
		mu.Lock()
		defer mu.Unlock()
		if b, ok := buses[name]; ok {
			return b, nil
		}
		b, err := i2creg.Open(name)
		if err != nil {
			return nil, fmt.Errorf("i2c bus %q: %w", name, err)
		}
		buses[name] = b
		return b, nil
	}
	return env, nil
}

// sample is one result of one sensor.
type sample struct {
	sensor drivers.Sensor
	value  float64
	err    error
	at     time.Time
	wall   bool
}

// Run samples, evaluates and uplinks until ctx ends, or until an update
// needs a restart: then it shuts down the same way and returns ErrRestart.
func (g *Gateway) Run(ctx context.Context) error {
	g.log.Info("gateway: starting", "device", g.cfg.DeviceID, "hub", g.cfg.Hub.Address, "sensors", len(g.sensors),
		"rules", len(g.cfg.Rules.Rules), "version", g.version, "clock_synced", g.clock.Synced())
	ctx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	otaCtx, stopOTA := context.WithCancel(context.Background())
	otaDone := make(chan error, 1)
	go func() {
		err := g.ota.Run(otaCtx)
		if errors.Is(err, updater.ErrRestart) {
			stopRun()
		}
		otaDone <- err
	}()
	upCtx, stopUp := context.WithCancel(context.Background())
	upDone := make(chan error, 1)
	go func() { upDone <- g.up.Run(upCtx) }()

	samples := make(chan sample, 64)
	var wg sync.WaitGroup
	for _, s := range g.sensors {
		wg.Add(1)
		go func() { defer wg.Done(); g.sampleLoop(ctx, s, samples) }()
	}
	procDone := make(chan error, 1)
	go func() { procDone <- g.process(ctx, samples) }()

	<-ctx.Done()
	wg.Wait()
	close(samples)
	perr := <-procDone // drains every sample taken
	g.actions.off()
	stopOTA() // before the uplink: its last report may still go out
	otaErr := <-otaDone
	stopUp()
	uerr := <-upDone
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	oerr := g.ob.Close(cctx)
	g.log.Info("gateway: stopped", "outbox_depth", g.ob.Stats().Depth)
	if errors.Is(otaErr, updater.ErrRestart) {
		return errors.Join(ErrRestart, perr, uerr, oerr)
	}
	return errors.Join(perr, uerr, oerr, otaErr)
}

func (g *Gateway) sampleLoop(ctx context.Context, s drivers.Sensor, out chan<- sample) {
	iv := g.specs[s.Name()].Interval
	if iv <= 0 {
		iv = catalog.DefaultInterval
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		sctx, cancel := context.WithTimeout(ctx, max(iv, 5*time.Second))
		v, err := s.Sense(sctx)
		cancel()
		if ctx.Err() != nil && err != nil {
			return // interrupted by shutdown: not a sensor fault
		}
		at, wall := g.clock.Now()
		out <- sample{sensor: s, value: v, err: err, at: at, wall: wall}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// process owns the rules engine: every sample becomes a reading or a fault
// in the outbox, and alert transitions follow their reading.
func (g *Gateway) process(ctx context.Context, in <-chan sample) error {
	events := make([]rules.Event, 0, 16)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var firstErr error
	keep := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
		if err != nil {
			g.log.Error("gateway: outbox", "err", err)
		}
	}
	for {
		select {
		case s, ok := <-in:
			if !ok {
				return firstErr
			}
			name := s.sensor.Name()
			if s.err != nil {
				keep(g.fault(name, s))
				continue
			}
			g.setHealth(name, "ok")
			rec := g.stamp(protocol.Record{Kind: protocol.KindReading, Sensor: name, Unit: s.sensor.Quantity().Unit()}, s.at, s.wall)
			v := s.value
			rec.Value = &v
			if _, err := g.ob.Append(context.Background(), rec); err != nil {
				keep(err)
				continue
			}
			events = g.eng.Observe(events[:0], rules.Reading{Sensor: name, Value: s.value, Time: s.at})
			keep(g.alerts(events, s.wall))
		case <-tick.C:
			at, wall := g.clock.Now()
			events = g.eng.Advance(events[:0], at)
			keep(g.alerts(events, wall))
		case <-ctx.Done():
			// Keep draining until the samplers are done and in is closed.
			ctx = context.Background()
		}
	}
}

func (g *Gateway) stamp(r protocol.Record, at time.Time, wall bool) protocol.Record {
	if wall {
		r.Time = at.UnixMilli()
		return r
	}
	r.Clock, r.Boot, r.MonoMS = protocol.ClockMono, g.clock.Boot(), at.Sub(MonoEpoch).Milliseconds()
	return r
}

func (g *Gateway) alerts(evs []rules.Event, wall bool) error {
	for _, e := range evs {
		a := &protocol.Alert{Rule: e.Rule, State: string(e.State), Severity: e.Severity, Value: e.Value,
			Window: e.Window, Message: e.Message, Labels: e.Labels}
		if wall {
			a.Since = e.Since.UnixMilli()
		}
		rec := g.stamp(protocol.Record{Kind: protocol.KindAlert, Sensor: e.Sensor, Alert: a}, e.Time, wall)
		// Alerts are committed at once: they are what the operator waits for.
		if _, err := g.ob.AppendSync(context.Background(), rec); err != nil {
			return err
		}
		g.log.Info("alert", "rule", e.Rule, "sensor", e.Sensor, "state", e.State, "value", e.Value, "message", e.Message)
		g.actions.apply(e)
	}
	return nil
}

// fault records a sensor fault when the sensor's state changes (ok → fault,
// or another cause), so a dead probe does not flood the outbox.
func (g *Gateway) fault(name string, s sample) error {
	f := drivers.AsFault(s.err)
	g.healthMu.Lock()
	prev := g.health[name]
	g.health[name] = f.Cause
	g.healthMu.Unlock()
	if prev == f.Cause {
		return nil
	}
	g.log.Warn("sensor fault", "sensor", name, "cause", f.Cause, "err", s.err)
	detail := f.Error()
	if len(detail) > protocol.MaxTextLen {
		detail = detail[:protocol.MaxTextLen]
	}
	rec := g.stamp(protocol.Record{Kind: protocol.KindFault, Sensor: name, Fault: &protocol.Fault{Cause: f.Cause, Detail: detail}}, s.at, s.wall)
	_, err := g.ob.Append(context.Background(), rec)
	return err
}

func (g *Gateway) setHealth(name, st string) {
	g.healthMu.Lock()
	g.health[name] = st
	g.healthMu.Unlock()
}

// dropNotice reports records the outbox dropped to stay within its bounds,
// and the seqs a crash may have lost (assigned in memory, never committed;
// those the hub holds were delivered).
func (g *Gateway) dropNotice(d outbox.DropRange) protocol.Record {
	at, wall := g.clock.Now()
	var why []string
	for _, r := range strings.Split(d.Reasons, ",") {
		switch r {
		case "crash":
			why = append(why, "records not committed before a crash or power cut (those the hub holds were delivered)")
		case "":
		default:
			why = append(why, "outbox full ("+r+")")
		}
	}
	return g.stamp(protocol.Record{Kind: protocol.KindFault, Sensor: "outbox", Fault: &protocol.Fault{
		Cause:  "dropped",
		Detail: fmt.Sprintf("up to %d records of seq %d..%d lost: %s", d.Count, d.First, d.Last, strings.Join(why, "; ")),
		Seqs:   &protocol.SeqRange{First: d.First, Last: d.Last},
	}}, at, wall)
}

// fixClock gives boot-relative records of this boot their wall time once the
// clock is synchronised (called by the uplink just before publishing).
func (g *Gateway) fixClock(r *protocol.Record) {
	if r.Clock != protocol.ClockMono || r.Boot != g.clock.Boot() || !g.clock.Synced() {
		return
	}
	ago := g.clock.SinceBoot() - time.Duration(r.MonoMS)*time.Millisecond
	r.Time = time.Now().Add(-ago).UnixMilli()
	r.Clock, r.Boot, r.MonoMS = "", "", 0
}

func (g *Gateway) heartbeat() protocol.Heartbeat {
	st := g.ob.Stats()
	g.healthMu.Lock()
	if off := st.JournalErr != nil; off != g.journalOff {
		// Without its journal the outbox can lose buffered records in a
		// crash (reported, never silent); say so once, and when it is back.
		g.journalOff = off
		if off {
			g.log.Warn("gateway: outbox journal off until the next commit succeeds", "err", st.JournalErr)
		} else {
			g.log.Info("gateway: outbox journal back on")
		}
	}
	g.healthMu.Unlock()
	hb := protocol.Heartbeat{UptimeS: int64(g.clock.SinceBoot() / time.Second), Outbox: st.Depth, Sensors: map[string]string{}}
	g.healthMu.Lock()
	for k, v := range g.health {
		hb.Sensors[k] = v
	}
	g.healthMu.Unlock()
	if t, ok := cpuTemp(); ok {
		hb.CPUTempC = &t
	}
	if wall := g.clock.Synced(); !wall {
		hb.Time = 0
	}
	return hb
}

func cpuTemp() (float64, bool) {
	b, err := os.ReadFile("/sys/class/thermal/thermal_zone0/temp")
	if err != nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
	if err != nil {
		return 0, false
	}
	return v / 1000, true
}

// Outbox exposes the outbox (tests).
func (g *Gateway) Outbox() *outbox.Outbox { return g.ob }
