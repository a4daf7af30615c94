package cli

import (
	"encoding/json"
	"fmt"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/outpost-iot/outpost/hub/store"
)

func init() {
	register("devices list", "list devices with presence [--state online|stale|offline] [--json]", devicesList)
	register("devices show", "show one device: devices show ID", devicesShow)
	register("devices presence", "presence history: devices presence ID", devicesPresence)
	register("devices log", "a device's log from an offset: devices log ID [--since-seq N] [--limit M]", devicesLog)
}

func ago(ms int64) string {
	if ms == 0 {
		return "-"
	}
	return time.Since(time.UnixMilli(ms)).Truncate(time.Second).String() + " ago"
}

func devicesList(e *Env, args []string) error {
	fs := newFlags("devices list", e)
	var hf hubFlags
	hf.add(fs)
	state := fs.String("state", "", "only devices in this state")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := hf.client()
	if err != nil {
		return err
	}
	var resp struct {
		Devices []store.Device `json:"devices"`
	}
	path := "/api/v1/devices"
	if *state != "" {
		path += "?state=" + url.QueryEscape(*state)
	}
	if err := c.do("GET", path, nil, &resp); err != nil {
		return err
	}
	if *asJSON {
		printJSON(e.Stdout, resp)
		return nil
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tSTATE\tSINCE\tREASON\tLAST HEARTBEAT\tFIRMWARE\tLAST SEQ\tALERTS")
	for _, d := range resp.Devices {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", d.Name, d.State, ago(d.SinceMS), d.Reason, ago(d.LastHBMS), d.Firmware, d.LastSeq, d.OpenAlerts)
	}
	return tw.Flush()
}

func getOne(e *Env, args []string, name, suffix string) error {
	fs := newFlags(name, e)
	var hf hubFlags
	hf.add(fs)
	since := fs.Int64("since-seq", 0, "records after this seq (log)")
	limit := fs.Int("limit", 0, "at most this many")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%s: give exactly one device ID", name)
	}
	c, err := hf.client()
	if err != nil {
		return err
	}
	q := url.Values{}
	if *since > 0 {
		q.Set("since_seq", fmt.Sprint(*since))
	}
	if *limit > 0 {
		q.Set("limit", fmt.Sprint(*limit))
	}
	path := "/api/v1/devices/" + url.PathEscape(fs.Arg(0)) + suffix
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var raw json.RawMessage
	if err := c.do("GET", path, nil, &raw); err != nil {
		return err
	}
	_, err = e.Stdout.Write(raw)
	return err
}

func devicesShow(e *Env, args []string) error { return getOne(e, args, "devices show", "") }
func devicesPresence(e *Env, args []string) error {
	return getOne(e, args, "devices presence", "/presence")
}
func devicesLog(e *Env, args []string) error { return getOne(e, args, "devices log", "/log") }
