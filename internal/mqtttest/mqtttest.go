// Package mqtttest dials real MQTT v5 clients (paho) over TLS for tests and
// the load generator.
package mqtttest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// Options for Dial.
type Options struct {
	TLS        *tls.Config // nil: plaintext
	KeepAlive  uint16
	CleanStart bool
	Will       *paho.WillMessage
	OnPublish  func(*paho.Publish)
	OnError    func(error)
	Timeout    time.Duration
}

// Client is a connected paho client and its connection.
type Client struct {
	*paho.Client
	Conn    net.Conn
	Connack *paho.Connack
}

// Dial connects clientID with password token to addr. A refused CONNECT
// returns the CONNACK (with its reason code) and an error.
func Dial(ctx context.Context, addr, clientID, token string, o Options) (*Client, error) {
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	d := net.Dialer{Timeout: o.Timeout}
	var conn net.Conn
	var err error
	if o.TLS != nil {
		host, _, _ := net.SplitHostPort(addr)
		cfg := o.TLS.Clone()
		if cfg.ServerName == "" {
			cfg.ServerName = host
		}
		conn, err = (&tls.Dialer{NetDialer: &d, Config: cfg}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("mqtttest: dial %s: %w", addr, err)
	}
	// paho writes a packet in several Writes and serialises packets only on
	// a connection that is a sync.Locker: without the wrapper its pinger's
	// PINGREQ can land inside another packet (the hub then drops the
	// connection as malformed). autopaho wraps its connections the same way.
	cfg := paho.ClientConfig{ClientID: clientID, Conn: packets.NewThreadSafeConn(conn), OnClientError: o.OnError}
	if o.OnPublish != nil {
		f := o.OnPublish
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			f(pr.Packet)
			return true, nil
		}}
	}
	c := paho.NewClient(cfg)
	cp := &paho.Connect{ClientID: clientID, KeepAlive: o.KeepAlive, CleanStart: o.CleanStart, WillMessage: o.Will,
		Username: clientID, UsernameFlag: true, Password: []byte(token), PasswordFlag: token != ""}
	cctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	ca, err := c.Connect(cctx, cp)
	if err != nil || ca == nil || ca.ReasonCode != 0 {
		conn.Close()
		if ca != nil {
			return &Client{Client: c, Conn: conn, Connack: ca}, fmt.Errorf("mqtttest: connect refused: reason 0x%02x: %v", ca.ReasonCode, err)
		}
		return nil, fmt.Errorf("mqtttest: connect: %w", err)
	}
	return &Client{Client: c, Conn: conn, Connack: ca}, nil
}
