package loadgen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/log"
)

// DialOptions configure one MQTT v5 client connection.
type DialOptions struct {
	Addr     string      // host:port
	TLS      *tls.Config // nil: plaintext; ServerName defaults to the host of Addr
	ClientID string
	Username string // sent when not empty
	Password string // the channel token; "" sends none

	KeepAlive      uint16
	Will           *paho.WillMessage
	ReceiveMaximum uint16 // publishes the broker may have unacknowledged towards us; 0 = 16

	// OnPublish is called for every PUBLISH received, in order, on one
	// goroutine; QoS 1 is acknowledged after it returns.
	OnPublish func(*paho.Publish)
	OnError   func(error)

	// NoPing sends no PINGREQ: after CONNECT the broker hears nothing, which
	// is what a frozen (kill -STOP) client looks like from the other side.
	NoPing bool
	// NoCoalesce writes each packet the way paho does by default: several
	// Write calls, i.e. several TLS records and system calls per packet.
	NoCoalesce bool

	Timeout time.Duration // dial + handshake + CONNACK; default 10 s
}

// Client is a connected paho client with its connections.
type Client struct {
	*paho.Client
	Raw     net.Conn  // the TCP connection: Close it to vanish without DISCONNECT (kill -9)
	TLS     *tls.Conn // nil for plaintext
	Connack *paho.Connack

	connCtx context.Context // done when the client ended
}

// ErrRefused is wrapped by Dial when the broker answered CONNACK with a
// failure reason code (Client.Connack holds it).
var ErrRefused = errors.New("loadgen: connect refused")

// Dial connects one client. A refused CONNECT returns the Client (with its
// Connack) and an error wrapping ErrRefused.
func Dial(ctx context.Context, o DialOptions) (*Client, error) {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.ReceiveMaximum == 0 {
		o.ReceiveMaximum = 16
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	d := &net.Dialer{}
	raw, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("loadgen: dial %s: %w", o.Addr, err)
	}
	c := &Client{Raw: raw}
	conn := raw
	if o.TLS != nil {
		cfg := o.TLS.Clone()
		if cfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(o.Addr)
			cfg.ServerName = host
		}
		c.TLS = tls.Client(raw, cfg)
		if err := c.TLS.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, fmt.Errorf("loadgen: TLS handshake with %s: %w", o.Addr, err)
		}
		conn = c.TLS
	}
	if o.NoCoalesce {
		conn = &lockedConn{Conn: conn}
	} else {
		conn = &coalescingConn{Conn: conn}
	}
	cfg := paho.ClientConfig{ClientID: o.ClientID, Conn: conn, OnClientError: o.OnError, PacketTimeout: o.Timeout}
	if o.NoPing {
		cfg.PingHandler = silentPinger{}
	}
	if f := o.OnPublish; f != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			f(pr.Packet)
			return true, nil
		}}
	}
	c.Client = paho.NewClient(cfg)
	rm := o.ReceiveMaximum
	cp := &paho.Connect{ClientID: o.ClientID, KeepAlive: o.KeepAlive, CleanStart: true, WillMessage: o.Will,
		Properties: &paho.ConnectProperties{ReceiveMaximum: &rm}}
	if o.Username != "" {
		cp.Username, cp.UsernameFlag = o.Username, true
	}
	if o.Password != "" {
		cp.Password, cp.PasswordFlag = []byte(o.Password), true
	}
	ca, err := c.Connect(ctx, cp)
	c.Connack = ca
	if err != nil || ca == nil || ca.ReasonCode >= 0x80 {
		raw.Close()
		if ca != nil {
			return c, fmt.Errorf("%w: %s: CONNACK reason 0x%02x: %v", ErrRefused, o.ClientID, ca.ReasonCode, err)
		}
		return nil, fmt.Errorf("loadgen: connect %s: %w", o.ClientID, err)
	}
	var cancelConn context.CancelFunc
	c.connCtx, cancelConn = context.WithCancel(context.Background())
	go func() { <-c.Done(); cancelConn() }()
	return c, nil
}

// Vanish closes the TCP connection without DISCONNECT or TLS close_notify,
// as the kernel does for a killed process.
func (c *Client) Vanish() {
	_ = c.Raw.Close()
	<-c.Done()
}

// Close sends DISCONNECT (normal, so no will) and waits for the client to
// end; a broker that does not read any more cannot hold it up for long.
func (c *Client) Close() {
	_ = c.Raw.SetWriteDeadline(time.Now().Add(2 * time.Second))
	_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	_ = c.Raw.Close()
	<-c.Done()
}

// coalescingConn turns each MQTT packet into one Write on the connection
// below. paho writes a packet with several Write calls (fixed header,
// variable header, payload) while holding the writer's lock if the writer is
// a sync.Locker; on a tls.Conn each Write is a TLS record and a system call.
// Here Lock starts a packet, Write appends to it, Unlock sends it. Every
// write of paho v0.23 goes through packets.ControlPacket.WriteTo, which
// takes the lock (a test checks one packet = one Write).
type coalescingConn struct {
	net.Conn
	mu  sync.Mutex
	buf []byte
	err error
}

func (c *coalescingConn) Lock() { c.mu.Lock() }

func (c *coalescingConn) Unlock() {
	if len(c.buf) > 0 && c.err == nil {
		if _, err := c.Conn.Write(c.buf); err != nil {
			c.err = err
			_ = c.Conn.Close() // the reader fails too, so paho notices
		}
	}
	if cap(c.buf) > 64<<10 {
		c.buf = nil
	} else {
		c.buf = c.buf[:0]
	}
	c.mu.Unlock()
}

// Write must be called between Lock and Unlock.
func (c *coalescingConn) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

// lockedConn serialises packets (paho's own packets.NewThreadSafeConn) but
// leaves paho's several writes per packet as they are.
type lockedConn struct {
	net.Conn
	sync.Mutex
}

// silentPinger never pings.
type silentPinger struct{}

func (silentPinger) Run(ctx context.Context, _ net.Conn, _ uint16) error {
	<-ctx.Done()
	return nil
}
func (silentPinger) PacketSent()           {}
func (silentPinger) PacketReceived()       {}
func (silentPinger) PingResp()             {}
func (silentPinger) SetDebug(_ log.Logger) {}
