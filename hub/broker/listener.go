package broker

import (
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// listener is mochi's TCP listener with what it lacks: a deadline on the TLS
// handshake and CONNECT (mochi replaces it with the keepalive deadline once
// CONNECT is read), and an address known before Serve (":0" in tests).
type listener struct {
	id       string
	ln       net.Listener
	deadline time.Duration
	log      *slog.Logger
	end      atomic.Bool
	once     sync.Once
}

var _ listeners.Listener = (*listener)(nil)

func newListener(id, addr string, cfg *tls.Config, deadline time.Duration) (*listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	return &listener{id: id, ln: ln, deadline: deadline}, nil
}

func (l *listener) ID() string                  { return l.id }
func (l *listener) Address() string             { return l.ln.Addr().String() }
func (l *listener) Protocol() string            { return "tcp" }
func (l *listener) Init(log *slog.Logger) error { l.log = log; return nil }

func (l *listener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if l.end.Load() {
				return
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return
		}
		if l.end.Load() {
			conn.Close()
			return
		}
		_ = conn.SetDeadline(time.Now().Add(l.deadline))
		go func() {
			if err := establish(l.id, conn); err != nil {
				l.log.Debug("mqtt: connection ended", "remote", conn.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

func (l *listener) Close(closeClients listeners.CloseFn) {
	l.once.Do(func() {
		l.end.Store(true)
		_ = l.ln.Close()
		closeClients(l.id)
	})
}
