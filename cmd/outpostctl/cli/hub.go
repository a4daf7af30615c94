package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/outpost-iot/outpost/certs"
)

// hubFlags are the connection flags every hub command takes.
type hubFlags struct {
	hub, token, tokenFile, ca string
}

func (h *hubFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&h.hub, "hub", os.Getenv("OUTPOST_HUB"), "hub API URL, e.g. https://hub.example:8443 (OUTPOST_HUB)")
	fs.StringVar(&h.token, "admin-token", os.Getenv("OUTPOST_ADMIN_TOKEN"), "admin API token (OUTPOST_ADMIN_TOKEN)")
	fs.StringVar(&h.tokenFile, "admin-token-file", "", "read the admin token from this file")
	fs.StringVar(&h.ca, "ca", os.Getenv("OUTPOST_CA"), "CA certificate that signed the hub's certificate (OUTPOST_CA)")
}

type hubClient struct {
	base  *url.URL
	token string
	http  *http.Client
}

func (h *hubFlags) client() (*hubClient, error) {
	if h.hub == "" {
		return nil, fmt.Errorf("no hub: give --hub or set OUTPOST_HUB (e.g. https://127.0.0.1:8443)")
	}
	u, err := url.Parse(h.hub)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("--hub %q: want https://host:port", h.hub)
	}
	tok := h.token
	if h.tokenFile != "" {
		b, err := os.ReadFile(h.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("admin token: %w", err)
		}
		tok = strings.TrimSpace(string(b))
	}
	if tok == "" {
		return nil, fmt.Errorf("no admin token: give --admin-token, --admin-token-file or set OUTPOST_ADMIN_TOKEN")
	}
	tr := &http.Transport{}
	if u.Scheme == "https" && h.ca != "" {
		cfg, err := certs.ClientTLS(h.ca)
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = cfg
	}
	return &hubClient{base: u, token: tok, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// apiError is the hub's JSON error body.
type apiError struct {
	Error  string `json:"error"`
	Detail string `json:"detail"`
}

func (c *hubClient) do(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base.JoinPath(path).String(), body)
	if err != nil {
		return err
	}
	if strings.Contains(path, "?") {
		p, q, _ := strings.Cut(path, "?")
		req.URL = c.base.JoinPath(p)
		req.URL.RawQuery = q
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if resp.StatusCode >= 300 {
		var ae apiError
		if json.Unmarshal(b, &ae) == nil && ae.Error != "" {
			return fmt.Errorf("hub: %s %s: %d %s: %s", method, path, resp.StatusCode, ae.Error, ae.Detail)
		}
		return fmt.Errorf("hub: %s %s: %s", method, path, resp.Status)
	}
	if out != nil {
		if raw, ok := out.(*json.RawMessage); ok {
			*raw = b
			return nil
		}
		return json.Unmarshal(b, out)
	}
	return nil
}

func printJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
