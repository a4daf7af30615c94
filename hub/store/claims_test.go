package store

import (
	"context"
	"errors"
	"sync"
	"testing"
)

func TestClaimBinding(t *testing.T) {
	s := open(t, Options{})
	ctx := context.Background()
	const now = int64(1_800_000_000_000)
	for _, c := range []Claim{
		{ID: "one", Labels: map[string]string{"site": "north"}, CreatedMS: now, ExpiresMS: now + 1000, Uses: 1},
		{ID: "two", CreatedMS: now, ExpiresMS: now + 1000, Uses: 2},
		{ID: "gone", CreatedMS: now, ExpiresMS: now + 1000, Uses: 1},
	} {
		if err := s.InsertClaim(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	// Many announcements of two devices race for claim "one": exactly one wins.
	var wg sync.WaitGroup
	wins := map[string]int{}
	var mu sync.Mutex
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dev := []string{"pi-a", "pi-b"}[i%2]
			_, err := s.BindClaim(ctx, "one", ClaimDevice{Device: dev, Firmware: "1.0"}, now, true)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins[dev]++
			} else if !errors.Is(err, ErrClaimUsed) {
				t.Errorf("bind %s: %v", dev, err)
			}
		}()
	}
	wg.Wait()
	if len(wins) != 1 || (wins["pi-a"] != 10 && wins["pi-b"] != 10) {
		t.Fatalf("claim one bound to %v", wins)
	}
	winner := "pi-a"
	if wins["pi-b"] > 0 {
		winner = "pi-b"
	}
	d, err := s.Device(ctx, winner)
	if err != nil || d.Labels["site"] != "north" {
		t.Fatalf("auto-accepted device: %+v %v", d, err)
	}
	if err := s.CheckClaim(ctx, "one", winner, now+1); err != nil {
		t.Errorf("the bound device may use its claim again: %v", err)
	}
	if err := s.CheckClaim(ctx, "one", "pi-c", now+1); !errors.Is(err, ErrClaimUsed) {
		t.Errorf("another device: %v", err)
	}
	if err := s.CheckClaim(ctx, "one", winner, now+1000); !errors.Is(err, ErrClaimExpired) {
		t.Errorf("expired: %v", err)
	}
	if err := s.CheckClaim(ctx, "nope", winner, now); !errors.Is(err, ErrClaimUnknown) {
		t.Errorf("unknown: %v", err)
	}
	if _, err := s.RevokeClaim(ctx, "gone", now); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BindClaim(ctx, "gone", ClaimDevice{Device: "pi-x"}, now, true); !errors.Is(err, ErrClaimRevoked) {
		t.Errorf("revoked: %v", err)
	}

	// A device id the hub knows already waits for an operator even with auto-accept.
	cd, err := s.BindClaim(ctx, "two", ClaimDevice{Device: winner}, now, true)
	if err != nil || cd.State != ClaimPending {
		t.Fatalf("known device: %+v %v", cd, err)
	}
	cd, err = s.BindClaim(ctx, "two", ClaimDevice{Device: "pi-new"}, now, false)
	if err != nil || cd.State != ClaimPending {
		t.Fatalf("manual: %+v %v", cd, err)
	}
	p, err := s.PendingDevices(ctx)
	if err != nil || len(p) != 2 {
		t.Fatalf("pending: %+v %v", p, err)
	}
	if _, err := s.DecideDevice(ctx, "pi-new", true, now+5); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DecideDevice(ctx, winner, false, now+5); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DecideDevice(ctx, "pi-new", true, now+6); !errors.Is(err, ErrNotFound) {
		t.Errorf("deciding twice: %v", err)
	}
	cd, err = s.BindClaim(ctx, "two", ClaimDevice{Device: "pi-new", Firmware: "1.1"}, now+7, false)
	if err != nil || cd.State != ClaimAccepted || cd.Firmware != "1.1" || cd.SeenMS != now+7 {
		t.Fatalf("accepted device announcing again: %+v %v", cd, err)
	}
	c, err := s.Claim(ctx, "two")
	if err != nil || len(c.Devices) != 2 {
		t.Fatalf("claim two: %+v %v", c, err)
	}
	cs, err := s.Claims(ctx, 10)
	if err != nil || len(cs) != 3 {
		t.Fatalf("claims: %d %v", len(cs), err)
	}
}
