package uplink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/eclipse/paho.golang/paho"

	"github.com/outpost-iot/outpost/internal/protocol"
)

// ErrStopped is returned by PublishStatus once Run has ended.
var ErrStopped = errors.New("uplink: stopped")

// PublishStatus publishes an OTA status report on the device's ota/status
// topic (QoS 1) and returns after the hub's PUBACK. It waits for the
// connection (until ctx ends) if it is down; a PUBACK with an error reason
// code is an error.
func (u *Uplink) PublishStatus(ctx context.Context, st protocol.OTAStatus) error {
	st.V = protocol.Version
	if st.Time == 0 {
		st.Time = u.cfg.Now().UnixMilli()
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("uplink: ota status: %w", err)
	}
	select {
	case <-u.cmReady:
	case <-ctx.Done():
		return fmt.Errorf("uplink: ota status: not connected: %w", ctx.Err())
	}
	cm := u.cm.Load()
	if cm == nil {
		return ErrStopped
	}
	if err := cm.AwaitConnection(ctx); err != nil {
		return fmt.Errorf("uplink: ota status: not connected: %w", err)
	}
	resp, err := cm.Publish(ctx, &paho.Publish{Topic: u.topic(protocol.SufOTAStatus), QoS: 1, Payload: b})
	if resp != nil && resp.ReasonCode >= 0x80 {
		return fmt.Errorf("uplink: ota status: hub refused it with reason 0x%02x", resp.ReasonCode)
	}
	if err != nil {
		return fmt.Errorf("uplink: ota status: %w", err)
	}
	return nil
}
