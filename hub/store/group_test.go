package store

import (
	"testing"
	"time"
)

// collect takes what is queued, waits up to linger for each op short of
// its target, and never takes more than the batch limit.
func TestCollect(t *testing.T) {
	s := &Store{ops: make(chan op, 8), opts: Options{MaxBatch: 4}}
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	queue := func(n int) {
		for range n {
			s.ops <- op{}
		}
	}
	collect := func(target int) (int, bool) {
		batch := []op{<-s.ops}
		open := s.collect(&batch, target, wait)
		return len(batch), open
	}

	queue(2)
	if n, open := collect(2); n != 2 || !open {
		t.Fatalf("2 queued, target 2: got %d ops, open %v", n, open)
	}
	queue(2)
	start := time.Now()
	if n, open := collect(3); n != 2 || !open {
		t.Fatalf("2 queued, target 3: got %d ops, open %v", n, open)
	}
	if el := time.Since(start); el < linger {
		t.Fatalf("gave up after %v, before linger (%v)", el, linger)
	}
	queue(6) // more than the batch limit: the rest waits for the next group
	if n, _ := collect(1); n != 4 {
		t.Fatalf("6 queued, limit 4: got %d ops", n)
	}
	if len(s.ops) != 2 {
		t.Fatalf("%d ops left queued, want 2", len(s.ops))
	}
	<-s.ops
	go func() { s.ops <- op{} }() // arrives while collect waits, or just before
	if n, _ := collect(2); n != 2 {
		t.Fatalf("1 queued and 1 arriving, target 2: got %d ops", n)
	}
	queue(1)
	close(s.ops)
	if n, open := collect(2); n != 1 || open {
		t.Fatalf("closed queue: got %d ops, open %v", n, open)
	}
}
