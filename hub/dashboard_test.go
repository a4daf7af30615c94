package hub

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/outpost-iot/outpost/hub/store"
	"github.com/outpost-iot/outpost/hub/web"
	"github.com/outpost-iot/outpost/internal/protocol"
)

func alertRec(seq uint64, t int64, rule, state string) protocol.Record {
	return protocol.Record{Seq: seq, Kind: protocol.KindAlert, Time: t, Sensor: "tank",
		Alert: &protocol.Alert{Rule: rule, State: state, Severity: "warning", Value: 9.5, Since: t, Message: rule + " " + state}}
}

// TestAlertsAPI: list by state, acknowledge once, errors — over bearer auth.
func TestAlertsAPI(t *testing.T) {
	th := startHub(t, t.TempDir())
	ctx := context.Background()
	now := time.Now().UnixMilli()
	old := now - 3*24*3600*1000
	recs := []protocol.Record{
		alertRec(1, old, "stale-cleared", protocol.AlertRaised), alertRec(2, old+1000, "stale-cleared", protocol.AlertCleared),
		alertRec(3, now-60_000, "recent-cleared", protocol.AlertRaised), alertRec(4, now-30_000, "recent-cleared", protocol.AlertCleared),
		alertRec(5, now-10_000, "temp-low", protocol.AlertRaised),
	}
	if err := th.Store().AppendLog(ctx, "gw-1", recs); err != nil {
		t.Fatal(err)
	}
	if err := th.Store().AppendLog(ctx, "gw-2", []protocol.Record{alertRec(1, now, "ph-high", protocol.AlertRaised)}); err != nil {
		t.Fatal(err)
	}
	type list struct {
		Alerts []store.Alert `json:"alerts"`
		Total  int           `json:"total"`
	}
	rules := func(l list) string {
		var out []string
		for _, a := range l.Alerts {
			out = append(out, a.Device+"/"+a.Rule)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct{ query, want string }{
		{"", "gw-2/ph-high,gw-1/temp-low,gw-1/recent-cleared,gw-1/stale-cleared"},
		{"?state=active", "gw-2/ph-high,gw-1/temp-low"},
		{"?state=cleared", "gw-1/recent-cleared,gw-1/stale-cleared"},
		{"?state=recent", "gw-2/ph-high,gw-1/temp-low,gw-1/recent-cleared"},
		{"?state=active&device=gw-1", "gw-1/temp-low"},
		{"?limit=1", "gw-2/ph-high"},
	} {
		var l list
		if st := th.api(t, "GET", "/api/v1/alerts"+tc.query, nil, &l); st != 200 || rules(l) != tc.want {
			t.Errorf("GET alerts%s: %d %s, want %s", tc.query, st, rules(l), tc.want)
		}
	}
	var l list
	th.api(t, "GET", "/api/v1/alerts?limit=1", nil, &l)
	if l.Total != 4 {
		t.Errorf("total with limit 1 = %d, want 4", l.Total)
	}

	var active list
	th.api(t, "GET", "/api/v1/alerts?state=active&device=gw-1", nil, &active)
	a := active.Alerts[0]
	body := map[string]any{"device": "gw-1", "rule": a.Rule, "sensor": a.Sensor, "raised": a.RaisedMS, "by": "ops-anna"}
	var acked struct{ Alert store.Alert }
	if st := th.api(t, "POST", "/api/v1/alerts/ack", body, &acked); st != 200 || acked.Alert.AckedBy != "ops-anna" || acked.Alert.AckedMS == 0 {
		t.Fatalf("ack: %d %+v", st, acked.Alert)
	}
	first := acked.Alert.AckedMS
	body["by"] = "someone-else"
	if st := th.api(t, "POST", "/api/v1/alerts/ack", body, &acked); st != 200 || acked.Alert.AckedBy != "ops-anna" || acked.Alert.AckedMS != first {
		t.Fatalf("second ack changed the first: %d %+v", st, acked.Alert)
	}
	var unacked list
	th.api(t, "GET", "/api/v1/alerts?state=active&acked=false", nil, &unacked)
	if rules(unacked) != "gw-2/ph-high" || unacked.Total != 1 {
		t.Fatalf("unacknowledged active: %s", rules(unacked))
	}
	for _, tc := range []struct {
		body any
		want int
	}{
		{map[string]any{"device": "gw-1", "rule": "nope", "sensor": "tank", "raised": a.RaisedMS}, 404},
		{map[string]any{"device": "gw-9", "rule": a.Rule, "sensor": "tank", "raised": a.RaisedMS}, 404},
		{map[string]any{"device": "gw 1", "rule": a.Rule, "sensor": "tank", "raised": a.RaisedMS}, 400},
		{map[string]any{"device": "gw-1", "rule": a.Rule}, 400},
		{map[string]any{"device": "gw-1", "rule": a.Rule, "sensor": "tank", "raised": a.RaisedMS, "extra": 1}, 400},
	} {
		if st := th.api(t, "POST", "/api/v1/alerts/ack", tc.body, nil); st != tc.want {
			t.Errorf("ack %v: %d, want %d", tc.body, st, tc.want)
		}
	}
	for _, q := range []string{"?state=sleepy", "?acked=maybe", "?device=a%20b", "?limit=0"} {
		if st := th.api(t, "GET", "/api/v1/alerts"+q, nil, nil); st != 400 {
			t.Errorf("GET alerts%s: %d, want 400", q, st)
		}
	}
	// The open-alert count of the fleet view agrees.
	d, _ := th.Store().Device(ctx, "gw-1")
	if d.OpenAlerts != 1 {
		t.Errorf("gw-1 open alerts = %d", d.OpenAlerts)
	}
}

// TestDashboardSessionOnTheHub: the hub serves the dashboard at / and a
// session cookie (with its CSRF token for changes) reaches the API.
func TestDashboardSessionOnTheHub(t *testing.T) {
	th := startHub(t, t.TempDir())
	jar, _ := cookiejar.New(nil)
	c := th.httpClient()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	base := th.addrs.HTTPURL

	resp, err := c.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 303 || resp.Header.Get("Location") != "/login" {
		t.Fatalf("GET / anonymous: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, err = c.PostForm(base+"/login", url.Values{"token": {th.AdminToken()}}); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 303 || !strings.Contains(resp.Header.Get("Set-Cookie"), "Secure") {
		t.Fatalf("login: %d %q", resp.StatusCode, resp.Header.Get("Set-Cookie"))
	}
	resp, err = c.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	var page strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		page.Write(buf[:n])
		if err != nil {
			break
		}
	}
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf-token" content="([^"]+)"`).FindStringSubmatch(page.String())
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("dashboard: %d, CSRF token found: %v", resp.StatusCode, m != nil)
	}
	do := func(method, path, csrf string, body any) int {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, base+path, strings.NewReader(string(b)))
		if csrf != "" {
			req.Header.Set(web.CSRFHeader, csrf)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := do("GET", "/api/v1/devices", "", nil); st != 200 {
		t.Fatalf("GET with session: %d", st)
	}
	issue := map[string]string{"device": "gw-web", "profile": "gateway", "ttl": "1h"}
	if st := do("POST", "/api/v1/tokens", "", issue); st != 403 {
		t.Fatalf("POST without CSRF token: %d", st)
	}
	if st := do("POST", "/api/v1/tokens", "forged", issue); st != 403 {
		t.Fatalf("POST with forged CSRF token: %d", st)
	}
	if st := do("POST", "/api/v1/tokens", m[1], issue); st != 201 {
		t.Fatalf("POST with the CSRF token: %d", st)
	}
	// The bearer API is unchanged: no cookie, no CSRF token needed, wrong bearer refused.
	if st := th.api(t, "GET", "/api/v1/tokens?device=gw-web", nil, nil); st != 200 {
		t.Fatalf("bearer: %d", st)
	}
	req, _ := http.NewRequest("GET", base+"/api/v1/devices", nil)
	req.Header.Set("Authorization", "Bearer wrong-token-1234567890")
	if resp, err = c.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("wrong bearer with a valid session cookie: %d", resp.StatusCode)
	}
}
