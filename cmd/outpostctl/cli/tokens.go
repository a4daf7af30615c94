package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/outpost-iot/outpost/hub/api"
)

func init() {
	register("token issue", "issue a channel token: --device ID [--profile gateway] [--pub F]... [--sub F]... [--ttl 24h]", tokenIssue)
	register("token revoke", "revoke a token: token revoke JTI", tokenRevoke)
	register("token list", "list issued tokens [--device ID]", tokenList)
	register("keys list", "list token signing keys", keysList)
	register("keys rotate", "make a new signing key active (old keys verify until retired)", keysRotate)
	register("keys retire", "stop accepting tokens of a key: keys retire KID", keysRetire)
}

func tokenIssue(e *Env, args []string) error {
	fs := newFlags("token issue", e)
	var hf hubFlags
	hf.add(fs)
	device := fs.String("device", "", "device id = MQTT client id")
	profile := fs.String("profile", "", `"gateway": the channels docs/protocol.md assigns to a gateway`)
	ttl := fs.String("ttl", "", "lifetime, e.g. 24h (default: the hub's tokens.default_ttl)")
	asJSON := fs.Bool("json", false, "print the whole response as JSON")
	var pub, sub strs
	fs.Var(&pub, "pub", "topic filter the holder may publish to (repeatable)")
	fs.Var(&sub, "sub", "topic filter the holder may subscribe to (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *device == "" {
		return fmt.Errorf("token issue: --device is required")
	}
	c, err := hf.client()
	if err != nil {
		return err
	}
	var resp api.IssueResponse
	if err := c.do("POST", "/api/v1/tokens", api.IssueRequest{Device: *device, Profile: *profile, Pub: pub, Sub: sub, TTL: *ttl}, &resp); err != nil {
		return err
	}
	if *asJSON {
		printJSON(e.Stdout, resp)
		return nil
	}
	fmt.Fprintln(e.Stdout, resp.Token)
	fmt.Fprintf(e.Stderr, "token for %s: jti %s, kid %s, expires %s\n  pub %v\n  sub %v\n", resp.Device, resp.JTI, resp.KeyID, resp.Expires.Format(time.RFC3339), resp.ACL.Pub, resp.ACL.Sub)
	return nil
}

func tokenRevoke(e *Env, args []string) error {
	fs := newFlags("token revoke", e)
	var hf hubFlags
	hf.add(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("token revoke: give exactly one JTI")
	}
	c, err := hf.client()
	if err != nil {
		return err
	}
	var resp struct {
		Token          json.RawMessage `json:"token"`
		ConnectionsCut int             `json:"connections_cut"`
	}
	if err := c.do("DELETE", "/api/v1/tokens/"+fs.Arg(0), nil, &resp); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "revoked %s (%d live connection(s) cut)\n", fs.Arg(0), resp.ConnectionsCut)
	return nil
}

func tokenList(e *Env, args []string) error {
	fs := newFlags("token list", e)
	var hf hubFlags
	hf.add(fs)
	device := fs.String("device", "", "only this device's tokens")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := hf.client()
	if err != nil {
		return err
	}
	var resp struct {
		Tokens []struct {
			JTI       string `json:"jti"`
			Device    string `json:"device"`
			IssuedMS  int64  `json:"issued"`
			ExpiresMS int64  `json:"expires"`
			RevokedMS int64  `json:"revoked"`
		} `json:"tokens"`
	}
	path := "/api/v1/tokens"
	if *device != "" {
		path += "?device=" + *device
	}
	if err := c.do("GET", path, nil, &resp); err != nil {
		return err
	}
	if *asJSON {
		printJSON(e.Stdout, resp)
		return nil
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JTI\tDEVICE\tEXPIRES\tREVOKED")
	for _, t := range resp.Tokens {
		rev := "-"
		if t.RevokedMS > 0 {
			rev = time.UnixMilli(t.RevokedMS).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.JTI, t.Device, time.UnixMilli(t.ExpiresMS).UTC().Format(time.RFC3339), rev)
	}
	return tw.Flush()
}

func keysCmd(e *Env, args []string, method, path, name string) error {
	fs := newFlags(name, e)
	var hf hubFlags
	hf.add(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if name == "keys retire" {
		if fs.NArg() != 1 {
			return fmt.Errorf("keys retire: give exactly one KID")
		}
		path += "/" + fs.Arg(0)
	}
	c, err := hf.client()
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.do(method, path, nil, &raw); err != nil {
		return err
	}
	_, err = e.Stdout.Write(raw)
	return err
}

func keysList(e *Env, args []string) error {
	return keysCmd(e, args, "GET", "/api/v1/keys", "keys list")
}
func keysRotate(e *Env, args []string) error {
	return keysCmd(e, args, "POST", "/api/v1/keys", "keys rotate")
}
func keysRetire(e *Env, args []string) error {
	return keysCmd(e, args, "DELETE", "/api/v1/keys", "keys retire")
}
