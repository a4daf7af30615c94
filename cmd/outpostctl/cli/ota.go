package cli

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/outpost-iot/outpost/firmware-ota/manifest"
	"github.com/outpost-iot/outpost/hub/ota"
)

func init() {
	register("ota keygen", "create a release key pair: ota keygen --out DIR (DIR/release.key 0600, DIR/release.pub)", otaKeygen)
	register("ota sign", "sign an artifact: ota sign --key FILE --version V --target linux/arm64[/armv7] [--board MODEL] [--notes TEXT] ARTIFACT", otaSign)
	register("ota verify", "verify ARTIFACT against ARTIFACT.manifest.json: ota verify --pub FILE ARTIFACT", otaVerify)
	register("ota upload", "store a signed release on the hub: ota upload ARTIFACT (reads ARTIFACT.manifest.json)", otaUpload)
	register("ota releases", "list the hub's releases [--json]", otaReleases)
	register("ota rollout", "rollouts: ota rollout create|list|status|pause|resume|abort (see ota rollout help)", otaRollout)
}

// parseArgs parses flags that may come before or after the positional
// arguments ("ota sign ARTIFACT --version 1.2.0") and returns the positionals.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func otaKeygen(e *Env, args []string) error {
	fs := newFlags("ota keygen", e)
	out := fs.String("out", "", "directory for release.key and release.pub (created 0700)")
	force := fs.Bool("force", false, "replace an existing key pair")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("ota keygen: --out DIR is required")
	}
	kid, err := manifest.Keygen(*out, *force)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.Stdout, kid)
	fmt.Fprintf(e.Stderr, "release key %s:\n  private %s (keep it offline; it signs firmware)\n  public  %s (give it to the hub's ota.release_keys and to gateways)\n",
		kid, filepath.Join(*out, manifest.PrivateKeyFile), filepath.Join(*out, manifest.PublicKeyFile))
	return nil
}

// parseTarget parses os/arch[/variant].
func parseTarget(s, board string) (manifest.Target, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 {
		return manifest.Target{}, fmt.Errorf("--target %q: want os/arch[/variant], e.g. linux/arm64 or linux/arm/armv6", s)
	}
	t := manifest.Target{OS: parts[0], Arch: parts[1], Board: board}
	if len(parts) == 3 {
		t.Variant = parts[2]
	}
	if err := t.Validate(); err != nil {
		return manifest.Target{}, fmt.Errorf("--target %q: %w", s, err)
	}
	return t, nil
}

func otaSign(e *Env, args []string) error {
	fs := newFlags("ota sign", e)
	key := fs.String("key", "", "release private key (release.key)")
	version := fs.String("version", "", "semantic version, e.g. 1.4.0")
	target := fs.String("target", "", "os/arch[/variant], e.g. linux/arm64 or linux/arm/armv6")
	board := fs.String("board", "", `board model prefix, e.g. "Raspberry Pi 4" (optional)`)
	notes := fs.String("notes", "", "release notes")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *key == "" || *version == "" || *target == "" {
		return errors.New("ota sign: give --key, --version, --target and exactly one ARTIFACT")
	}
	t, err := parseTarget(*target, *board)
	if err != nil {
		return err
	}
	priv, err := manifest.LoadPrivateKey(*key)
	if err != nil {
		return err
	}
	m, err := manifest.Sign(priv, pos[0], *version, t, *notes)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.Stdout, pos[0]+manifest.ManifestSuffix)
	fmt.Fprintf(e.Stderr, "signed %s %s for %s: %d bytes, sha256 %s, key %s\n", pos[0], m.Version, m.Target, m.Size, m.SHA256, m.KeyID)
	return nil
}

func otaVerify(e *Env, args []string) error {
	fs := newFlags("ota verify", e)
	var pubs strs
	fs.Var(&pubs, "pub", "trusted release public key file (repeatable)")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || len(pubs) == 0 {
		return errors.New("ota verify: give --pub FILE and exactly one ARTIFACT")
	}
	ring, err := manifest.LoadKeyring(pubs...)
	if err != nil {
		return err
	}
	m, err := manifest.Verify(ring, pos[0])
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "ok %s %s %s %d %s\n", pos[0], m.Version, m.Target, m.Size, m.SHA256)
	return nil
}

func otaUpload(e *Env, args []string) error {
	fs := newFlags("ota upload", e)
	var hf hubFlags
	hf.add(fs)
	mpath := fs.String("manifest", "", "signed manifest (default ARTIFACT"+manifest.ManifestSuffix+")")
	asJSON := fs.Bool("json", false, "print the response as JSON")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("ota upload: give exactly one ARTIFACT")
	}
	if *mpath == "" {
		*mpath = pos[0] + manifest.ManifestSuffix
	}
	c, err := hf.client()
	if err != nil {
		return err
	}
	mdata, err := os.ReadFile(*mpath)
	if err != nil {
		return fmt.Errorf("ota upload: manifest: %w", err)
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return fmt.Errorf("ota upload: %w", err)
	}
	defer func() { _ = f.Close() }() // read-only
	var resp ota.UploadResponse
	if err := c.uploadRelease(mdata, f, filepath.Base(pos[0]), &resp); err != nil {
		return err
	}
	if *asJSON {
		printJSON(e.Stdout, resp)
		return nil
	}
	r := resp.Release
	what := "stored"
	if !resp.Created {
		what = "already stored"
	}
	fmt.Fprintf(e.Stdout, "%s release %s for %s (%d bytes, sha256 %s, key %s)\n", what, r.Version, r.Target, r.Size, r.SHA256, r.KeyID)
	return nil
}

// uploadRelease streams a multipart upload (manifest first, then the
// artifact) without a client timeout: artifacts can be large and links slow.
func (c *hubClient) uploadRelease(manifestData []byte, artifact io.Reader, name string, out any) error {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	done := make(chan error, 1)
	go func() { // ends when the body is written or the request closed the pipe
		err := func() error {
			w, err := mw.CreateFormFile(ota.PartManifest, name+manifest.ManifestSuffix)
			if err != nil {
				return err
			}
			if _, err := w.Write(manifestData); err != nil {
				return err
			}
			if w, err = mw.CreateFormFile(ota.PartArtifact, name); err != nil {
				return err
			}
			if _, err := io.Copy(w, artifact); err != nil {
				return err
			}
			return mw.Close()
		}()
		_ = pw.CloseWithError(err) // nil: EOF for the reader
		done <- err
	}()
	req, err := http.NewRequest("POST", c.base.JoinPath("/api/v1/ota/releases").String(), pr)
	if err != nil {
		_ = pr.Close()
		<-done
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := (&http.Client{Transport: c.http.Transport}).Do(req)
	_ = pr.CloseWithError(errors.New("request finished")) // unblocks the writer if the hub answered early
	werr := <-done
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("hub: %w", err)
	}
	if resp.StatusCode >= 300 {
		var ae apiError
		if json.Unmarshal(b, &ae) == nil && ae.Error != "" {
			return fmt.Errorf("hub: upload: %d %s: %s", resp.StatusCode, ae.Error, ae.Detail)
		}
		return fmt.Errorf("hub: upload: %s", resp.Status)
	}
	if werr != nil {
		return fmt.Errorf("ota upload: reading the artifact: %w", werr)
	}
	return json.Unmarshal(b, out)
}

func otaReleases(e *Env, args []string) error {
	fs := newFlags("ota releases", e)
	var hf hubFlags
	hf.add(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseArgs(fs, args); err != nil {
		return err
	}
	c, err := hf.client()
	if err != nil {
		return err
	}
	var resp struct {
		Releases []ota.Release `json:"releases"`
	}
	if err := c.do("GET", "/api/v1/ota/releases", nil, &resp); err != nil {
		return err
	}
	if *asJSON {
		printJSON(e.Stdout, resp)
		return nil
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tTARGET\tSIZE\tSHA256\tKEY\tUPLOADED")
	for _, r := range resp.Releases {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", r.Version, r.Target, r.Size, r.SHA256[:16], r.KeyID, time.UnixMilli(r.UploadedMS).UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

const rolloutUsage = `usage:
  ota rollout create --release V [--target T] --devices ID,ID | --selector label=value
                     [--waves 5%,25%,100%] [--max-failures 10%|N] [--allow-downgrade]
  ota rollout list [--state active|paused|completed|aborted]
  ota rollout status ID
  ota rollout pause|resume|abort ID
each takes the hub flags and --json`

func otaRollout(e *Env, args []string) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(e.Stdout, rolloutUsage)
		if len(args) == 0 {
			return errors.New("ota rollout: give a subcommand")
		}
		return nil
	}
	sub, args := args[0], args[1:]
	fs := newFlags("ota rollout "+sub, e)
	var hf hubFlags
	hf.add(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	var req ota.RolloutRequest
	var devices, waves strs
	var maxFailures, state string
	switch sub {
	case "create":
		fs.StringVar(&req.Release, "release", "", "release version")
		fs.StringVar(&req.Target, "target", "", "release target, when the version exists for several")
		fs.Var(&devices, "devices", "device ids (comma-separated or repeated)")
		fs.StringVar(&req.Selector, "selector", "", "label=value[,label=value]: devices whose labels match")
		fs.Var(&waves, "waves", "cumulative wave sizes, e.g. 5%,25%,100% (default 100%)")
		fs.StringVar(&maxFailures, "max-failures", "", "pause when failures pass this share of notified devices (10%) or count (3); default 0")
		fs.BoolVar(&req.AllowDowngrade, "allow-downgrade", false, "allow devices running a newer version to install this one")
	case "list":
		fs.StringVar(&state, "state", "", "only rollouts in this state")
	case "status", "pause", "resume", "abort":
	default:
		return fmt.Errorf("ota rollout: unknown subcommand %q\n%s", sub, rolloutUsage)
	}
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	var ro ota.Rollout
	switch sub {
	case "create":
		if len(pos) != 0 || req.Release == "" {
			return errors.New("ota rollout create: give --release and --devices or --selector (no positional arguments)")
		}
		req.Devices, req.Waves = devices, waves
		if maxFailures != "" {
			l, err := ota.ParseLimit(maxFailures)
			if err != nil {
				return fmt.Errorf("--max-failures: %w", err)
			}
			req.MaxFailures = &l
		}
		c, err := hf.client()
		if err != nil {
			return err
		}
		if err := c.do("POST", "/api/v1/ota/rollouts", req, &ro); err != nil {
			return err
		}
		if *asJSON {
			printJSON(e.Stdout, ro)
			return nil
		}
		fmt.Fprintln(e.Stdout, ro.ID)
		printRollout(e.Stderr, ro, false)
		return nil
	case "list":
		if len(pos) != 0 {
			return errors.New("ota rollout list: no positional arguments")
		}
		c, err := hf.client()
		if err != nil {
			return err
		}
		path := "/api/v1/ota/rollouts"
		if state != "" {
			path += "?state=" + url.QueryEscape(state)
		}
		var resp struct {
			Rollouts []ota.Rollout `json:"rollouts"`
		}
		if err := c.do("GET", path, nil, &resp); err != nil {
			return err
		}
		if *asJSON {
			printJSON(e.Stdout, resp)
			return nil
		}
		tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ROLLOUT\tRELEASE\tTARGET\tSTATE\tWAVE\tDONE\tSUCCEEDED\tFAILED\tDEVICES\tCREATED")
		for _, r := range resp.Rollouts {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%.0f%%\t%d\t%d\t%d\t%s\n", r.ID, r.Release, r.Target, r.State, r.CurrentWave, len(r.Waves),
				r.Progress, r.Succeeded, r.Failures, r.Total, time.UnixMilli(r.CreatedMS).UTC().Format(time.RFC3339))
		}
		return tw.Flush()
	}
	if len(pos) != 1 {
		return fmt.Errorf("ota rollout %s: give exactly one rollout ID", sub)
	}
	c, err := hf.client()
	if err != nil {
		return err
	}
	path := "/api/v1/ota/rollouts/" + url.PathEscape(pos[0])
	if sub == "status" {
		err = c.do("GET", path, nil, &ro)
	} else {
		err = c.do("POST", path+"/"+sub, nil, &ro)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		printJSON(e.Stdout, ro)
		return nil
	}
	printRollout(e.Stdout, ro, sub == "status")
	return nil
}

func printRollout(w io.Writer, r ota.Rollout, devices bool) {
	fmt.Fprintf(w, "rollout %s: release %s (%s), %s, wave %d of %d, %.0f%% done: %d succeeded, %d failed of %d (max failures %s)\n",
		r.ID, r.Release, r.Target, r.State, r.CurrentWave, len(r.Waves), r.Progress, r.Succeeded, r.Failures, r.Total, r.MaxFailures)
	if r.Reason != "" {
		fmt.Fprintf(w, "  %s\n", r.Reason)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  WAVE\tSIZE\tDEVICES\tSTARTED\tDONE")
	for _, wv := range r.Waves {
		fmt.Fprintf(tw, "  %d\t%s\t%d\t%v\t%d\n", wv.Wave, wv.Size, wv.Devices, wv.Started, wv.Done)
	}
	_ = tw.Flush()
	if !devices {
		return
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tWAVE\tSTATE\tPROGRESS\tFIRMWARE\tUPDATED\tREASON")
	for _, d := range r.Devices {
		progress := "-"
		if d.Total > 0 {
			progress = fmt.Sprintf("%d/%d", d.Bytes, d.Total)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\n", d.Device, d.Wave, d.State, progress, d.Firmware, ago(d.UpdatedMS), d.Reason)
	}
	_ = tw.Flush()
}
