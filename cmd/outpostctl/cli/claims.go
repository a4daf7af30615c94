package cli

import (
	"fmt"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/outpost-iot/outpost/hub/api"
	"github.com/outpost-iot/outpost/hub/store"
)

func init() {
	register("claim create", "one-time claim token for a new gateway: [--ttl 24h] [--labels k=v,...] [--uses 1] [--json]", claimCreate)
	register("claim list", "list claims and the devices they registered [--json]", claimList)
	register("claim revoke", "revoke a claim: claim revoke ID", claimRevoke)
	register("devices pending", "devices that announced with a claim and wait for an operator [--json]", devicesPending)
	register("devices accept", "accept a pending device: devices accept ID", func(e *Env, a []string) error { return devicesDecide(e, a, "accept") })
	register("devices reject", "reject a pending device: devices reject ID", func(e *Env, a []string) error { return devicesDecide(e, a, "reject") })
}

// parseLabels reads "k=v,k2=v2".
func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--labels: %q is not key=value", kv)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

func claimCreate(e *Env, args []string) error {
	fs := newFlags("claim create", e)
	var hf hubFlags
	hf.add(fs)
	ttl := fs.String("ttl", "24h", "lifetime of the claim token")
	labels := fs.String("labels", "", "labels the registered device gets, k=v,k2=v2")
	uses := fs.Int("uses", 1, "how many devices may register with it")
	asJSON := fs.Bool("json", false, "print the whole response as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lm, err := parseLabels(*labels)
	if err != nil {
		return err
	}
	c, err := hf.client()
	if err != nil {
		return err
	}
	var resp api.ClaimResponse
	if err := c.do("POST", "/api/v1/claims", api.ClaimRequest{TTL: *ttl, Uses: *uses, Labels: lm}, &resp); err != nil {
		return err
	}
	if *asJSON {
		printJSON(e.Stdout, resp)
		return nil
	}
	fmt.Fprintln(e.Stdout, resp.Token)
	fmt.Fprintf(e.Stderr, "claim %s: %d use(s), expires %s, labels %v\n", resp.Claim.ID, resp.Claim.Uses,
		time.UnixMilli(resp.Claim.ExpiresMS).UTC().Format(time.RFC3339), fmtLabels(resp.Claim.Labels))
	return nil
}

func fmtLabels(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	var kv []string
	for k, v := range m {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

// listing runs a list command: flags, GET path into out, and with --json
// prints it; done reports that nothing is left to print.
func listing(e *Env, args []string, name, path string, out any) (done bool, err error) {
	fs := newFlags(name, e)
	var hf hubFlags
	hf.add(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return true, err
	}
	c, err := hf.client()
	if err != nil {
		return true, err
	}
	if err := c.do("GET", path, nil, out); err != nil {
		return true, err
	}
	if *asJSON {
		printJSON(e.Stdout, out)
		return true, nil
	}
	return false, nil
}

func claimList(e *Env, args []string) error {
	var resp struct {
		Claims []store.Claim `json:"claims"`
	}
	if done, err := listing(e, args, "claim list", "/api/v1/claims", &resp); done {
		return err
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLAIM\tEXPIRES\tUSED\tDEVICES\tLABELS\tREVOKED")
	for _, cl := range resp.Claims {
		var devs []string
		for _, d := range cl.Devices {
			devs = append(devs, d.Device+"("+d.State+")")
		}
		rev := "-"
		if cl.RevokedMS > 0 {
			rev = time.UnixMilli(cl.RevokedMS).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\n", cl.ID, time.UnixMilli(cl.ExpiresMS).UTC().Format(time.RFC3339),
			len(cl.Devices), cl.Uses, strings.Join(devs, ","), fmtLabels(cl.Labels), rev)
	}
	return tw.Flush()
}

func claimRevoke(e *Env, args []string) error {
	fs := newFlags("claim revoke", e)
	var hf hubFlags
	hf.add(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("claim revoke: give exactly one claim ID")
	}
	c, err := hf.client()
	if err != nil {
		return err
	}
	var resp struct {
		ConnectionsCut int `json:"connections_cut"`
	}
	if err := c.do("DELETE", "/api/v1/claims/"+url.PathEscape(fs.Arg(0)), nil, &resp); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "revoked claim %s (%d claim session(s) cut)\n", fs.Arg(0), resp.ConnectionsCut)
	return nil
}

func devicesPending(e *Env, args []string) error {
	var resp struct {
		Devices []store.ClaimDevice `json:"devices"`
	}
	if done, err := listing(e, args, "devices pending", "/api/v1/devices?state=pending", &resp); done {
		return err
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tCLAIM\tFIRMWARE\tBOARD\tARCH\tREMOTE\tFIRST ANNOUNCE\tLAST ANNOUNCE")
	for _, d := range resp.Devices {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Device, d.Claim, d.Firmware, d.Board, d.Arch, d.Remote, ago(d.UsedMS), ago(d.SeenMS))
	}
	return tw.Flush()
}

func devicesDecide(e *Env, args []string, verb string) error {
	fs := newFlags("devices "+verb, e)
	var hf hubFlags
	hf.add(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("devices %s: give exactly one device ID", verb)
	}
	c, err := hf.client()
	if err != nil {
		return err
	}
	if err := c.do("POST", "/api/v1/devices/"+url.PathEscape(fs.Arg(0))+"/"+verb, nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "%sed %s\n", verb, fs.Arg(0)) // accepted, rejected
	return nil
}
