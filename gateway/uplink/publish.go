package uplink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-iot/outpost/internal/protocol"
	"github.com/outpost-iot/outpost/internal/wait"
)

// errConn means the connection went away mid-drain: wait for the next one.
var errConn = errors.New("uplink: connection lost")

// publisher drains the outbox on every connection: birth and subscriptions
// first, then alerts, the latest value per sensor, and the backlog at a
// capped rate, with new records interleaved so the hub stays current.
func (u *Uplink) publisher(ctx context.Context, cm *autopaho.ConnectionManager) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-u.upCh:
		}
		err := u.session(ctx, cm)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			u.log.Warn("uplink: publishing paused", "err", err)
			// If the connection is still up (e.g. the hub refused a batch as
			// not authorised), try again after a pause rather than spinning.
			if u.connected.Load() {
				select {
				case <-ctx.Done():
					return
				case <-time.After(5 * time.Second):
				}
				select {
				case u.upCh <- struct{}{}:
				default:
				}
			}
		}
	}
}

func (u *Uplink) session(ctx context.Context, cm *autopaho.ConnectionManager) error {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := cm.Subscribe(pctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: u.topic(protocol.SufIn) + "/#", QoS: 1},
		{Topic: protocol.TopicFleetOTA, QoS: 1},
	}}); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if _, err := cm.Publish(pctx, &paho.Publish{Topic: u.topic(protocol.SufStatus), QoS: 1, Retain: true, Payload: u.status("online")}); err != nil {
		return fmt.Errorf("birth: %w", err)
	}
	startSeq, _ := u.ob.Appended()

	// 1. Active alerts (every pending alert transition, in order).
	for {
		recs, err := u.ob.PendingAlerts(ctx, 0, u.cfg.BatchSize)
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			break
		}
		if err := u.send(ctx, cm, recs); err != nil {
			return err
		}
	}
	// 2. The latest value of each sensor.
	latest, err := u.ob.LatestPerSensor(ctx)
	if err != nil {
		return err
	}
	for len(latest) > 0 {
		n := min(len(latest), u.cfg.BatchSize)
		if err := u.send(ctx, cm, latest[:n]); err != nil {
			return err
		}
		latest = latest[n:]
	}
	// 3. Backlog (seq ≤ startSeq) at a capped rate, with new records first.
	backlogAfter, newAfter := uint64(0), startSeq
	var budget float64
	last := time.Now()
	for {
		// New records since the outage ended go out at once. seq0 is read
		// before Peek: if Peek finds nothing, every record up to seq0 has
		// been acknowledged already (e.g. alerts sent first).
		seq0, ch := u.ob.Appended()
		recs, err := u.ob.Peek(ctx, newAfter, u.cfg.BatchSize)
		if err != nil {
			return err
		}
		if len(recs) > 0 {
			if err := u.send(ctx, cm, recs); err != nil {
				return err
			}
			newAfter = recs[len(recs)-1].Seq
			continue
		}
		newAfter = max(newAfter, seq0)
		if backlogAfter < startSeq {
			limit := u.cfg.BatchSize
			if u.cfg.BacklogRate > 0 {
				now := time.Now()
				budget = min(budget+now.Sub(last).Seconds()*float64(u.cfg.BacklogRate), float64(u.cfg.BacklogRate))
				last = now
				if budget < 1 {
					if err := wait.Sleep(ctx, time.Duration((1-budget)/float64(u.cfg.BacklogRate)*float64(time.Second))); err != nil {
						return err
					}
					continue
				}
				limit = min(limit, int(budget))
			}
			recs, err := u.ob.Peek(ctx, backlogAfter, limit)
			if err != nil {
				return err
			}
			recs = trimAbove(recs, startSeq)
			if len(recs) == 0 {
				backlogAfter = startSeq
				continue
			}
			if err := u.send(ctx, cm, recs); err != nil {
				return err
			}
			budget -= float64(len(recs))
			backlogAfter = recs[len(recs)-1].Seq
			continue
		}
		// Caught up: wait for the next record or the end of the connection.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		case <-u.upCh:
			// Reconnected: start over (alerts first).
			select {
			case u.upCh <- struct{}{}:
			default:
			}
			return nil
		case <-time.After(time.Second):
			if !u.connected.Load() {
				return nil
			}
		}
	}
}

func trimAbove(recs []protocol.Record, max uint64) []protocol.Record {
	for i, r := range recs {
		if r.Seq > max {
			return recs[:i]
		}
	}
	return recs
}

// send publishes recs as one batch and acknowledges them in the outbox after
// the hub's PUBACK. A batch the hub refuses as malformed is split so that
// only the bad records are dropped (and logged).
func (u *Uplink) send(ctx context.Context, cm *autopaho.ConnectionManager, recs []protocol.Record) error {
	if u.cfg.Transform != nil {
		for i := range recs {
			u.cfg.Transform(&recs[i])
		}
	}
	b, err := json.Marshal(protocol.Batch{V: protocol.Version, Records: recs})
	if err != nil {
		return fmt.Errorf("encode batch: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := cm.Publish(pctx, &paho.Publish{Topic: u.topic(protocol.SufLog), QoS: 1, Payload: b})
	if err != nil {
		if resp == nil {
			return fmt.Errorf("%w: %v", errConn, err)
		}
	}
	code := byte(0)
	if resp != nil {
		code = resp.ReasonCode
	}
	switch {
	case code < 0x80:
		seqs := make([]uint64, len(recs))
		for i, r := range recs {
			seqs[i] = r.Seq
		}
		if err := u.ob.Ack(ctx, seqs...); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
		u.published.Add(uint64(len(recs)))
		return nil
	case code == 0x99 && len(recs) > 1: // payload format invalid: isolate the bad record(s)
		for i := range recs {
			if err := u.send(ctx, cm, recs[i:i+1]); err != nil {
				return err
			}
		}
		return nil
	case code == 0x99:
		u.log.Error("uplink: hub refused a record as malformed; dropping it", "seq", recs[0].Seq, "kind", recs[0].Kind, "sensor", recs[0].Sensor)
		u.rejected.Add(1)
		return u.ob.Ack(ctx, recs[0].Seq)
	default:
		return fmt.Errorf("hub refused the log batch with reason 0x%02x (records kept)", code)
	}
}
