package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// Event is one server-sent event.
type Event struct {
	Type string // SSE event name, e.g. "presence"
	Data any    // JSON-encoded into the data line
}

// Broadcaster fans events out to SSE subscribers. A subscriber that cannot
// keep up loses events (counted) rather than slowing the hub.
type Broadcaster struct {
	mu     sync.Mutex
	subs   map[chan []byte]struct{}
	closed bool
}

// NewBroadcaster returns an empty broadcaster.
func NewBroadcaster() *Broadcaster { return &Broadcaster{subs: map[chan []byte]struct{}{}} }

// Publish sends ev to every subscriber without blocking.
func (b *Broadcaster) Publish(ev Event) {
	data, err := json.Marshal(ev.Data)
	if err != nil {
		return
	}
	msg := fmt.Appendf(nil, "event: %s\ndata: %s\n\n", ev.Type, data)
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		select {
		case ch <- msg:
		default:
		}
	}
}

func (b *Broadcaster) subscribe() (chan []byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, false
	}
	ch := make(chan []byte, 256)
	b.subs[ch] = struct{}{}
	return ch, true
}

func (b *Broadcaster) unsubscribe(ch chan []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[ch]; ok {
		delete(b.subs, ch)
		close(ch)
	}
}

// Close ends every stream.
func (b *Broadcaster) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for ch := range b.subs {
		delete(b.subs, ch)
		close(ch)
	}
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	fl, ok := w.(http.Flusher)
	if !ok {
		return fmt.Errorf("streaming unsupported")
	}
	ch, ok := s.Events.subscribe()
	if !ok {
		return fmt.Errorf("%w: hub is shutting down", ErrConflict)
	}
	defer s.Events.unsubscribe(ch)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(200)
	fmt.Fprint(w, ": outpost events\n\n")
	fl.Flush()
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case msg, ok := <-ch:
			if !ok {
				return nil
			}
			if _, err := w.Write(msg); err != nil {
				return nil
			}
			fl.Flush()
		case <-ping.C:
			if _, err := fmt.Fprint(w, ": ping\n\n"); err != nil {
				return nil
			}
			fl.Flush()
		}
	}
}
