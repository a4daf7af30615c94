package store

import (
	"testing"
	"time"
)

// A group of one must not stay one: after probeEvery full groups the writer
// waits for one more op, and a group that ran out of time sets the target
// to what came.
func TestGrouperProbesAndShrinks(t *testing.T) {
	var g grouper
	if g.target() != 1 {
		t.Fatalf("initial target = %d, want 1", g.target())
	}
	for i := 1; i < probeEvery; i++ {
		g.observe(1, true, 100)
		if g.target() != 1 {
			t.Fatalf("after %d full groups target = %d, want 1", i, g.target())
		}
	}
	g.observe(1, true, 100)
	if g.target() != 2 {
		t.Fatalf("after %d full groups target = %d, want 2", probeEvery, g.target())
	}
	g.observe(7, true, 100) // more were queued than expected
	if g.target() != 7 {
		t.Fatalf("target = %d after a full group of 7, want 7", g.target())
	}
	g.observe(3, false, 100)
	if g.target() != 3 {
		t.Fatalf("target = %d after a group of 3 ran out of time, want 3", g.target())
	}
	for range probeEvery {
		g.observe(100, true, 100)
	}
	if g.target() != 100 {
		t.Fatalf("target = %d, want the batch limit 100", g.target())
	}
}

func TestCollect(t *testing.T) {
	s := &Store{ops: make(chan op, 8), opts: Options{MaxBatch: 4}}
	wait := time.NewTimer(time.Hour)
	wait.Stop()
	queue := func(n int) {
		for range n {
			s.ops <- op{}
		}
	}
	collect := func(target int) (int, bool, bool) {
		batch := []op{<-s.ops}
		open, full := s.collect(&batch, target, wait)
		return len(batch), open, full
	}

	queue(2)
	if n, open, full := collect(2); n != 2 || !open || !full {
		t.Fatalf("2 queued, target 2: got %d ops, open %v, full %v", n, open, full)
	}
	queue(2)
	start := time.Now()
	if n, open, full := collect(3); n != 2 || !open || full {
		t.Fatalf("2 queued, target 3: got %d ops, open %v, full %v", n, open, full)
	}
	if el := time.Since(start); el < linger {
		t.Fatalf("gave up after %v, before linger (%v)", el, linger)
	}
	queue(6) // more than the batch limit: the rest waits for the next group
	if n, _, full := collect(1); n != 4 || !full {
		t.Fatalf("6 queued, limit 4: got %d ops, full %v", n, full)
	}
	if len(s.ops) != 2 {
		t.Fatalf("%d ops left queued, want 2", len(s.ops))
	}
	<-s.ops
	go func() { s.ops <- op{} }() // arrives while collect waits, or just before
	if n, _, full := collect(2); n != 2 || !full {
		t.Fatalf("1 queued and 1 arriving, target 2: got %d ops, full %v", n, full)
	}
	queue(1)
	close(s.ops)
	if n, open, _ := collect(2); n != 1 || open {
		t.Fatalf("closed queue: got %d ops, open %v", n, open)
	}
}
