package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/outpost-iot/outpost/gateway"
	"github.com/outpost-iot/outpost/internal/config"
	"github.com/outpost-iot/outpost/internal/provision"
)

func init() {
	register("flash prepare", "make a Raspberry Pi OS image or SD card boot into a gateway: --image FILE | --device DEV --config gateway.yaml --hub HOST:PORT --claim-token FILE", flashPrepare)
}

// validateGatewayConfig checks the configuration the Pi will run with the
// gateway's own rules, before anything is written.
func validateGatewayConfig(b []byte) error {
	c := gateway.DefaultConfig()
	if err := config.DecodeYAML(b, &c, "gateway.yaml"); err != nil {
		return err
	}
	return c.Validate()
}

func flashPrepare(e *Env, args []string) error {
	fs := newFlags("flash prepare", e)
	image := fs.String("image", "", "Raspberry Pi OS image (.img, decompressed): edited in place, or written to --device first")
	device := fs.String("device", "", "SD card (/dev/sdX, /dev/mmcblkN; macOS /dev/rdiskN): edited in place, or overwritten with --image")
	cfgPath := fs.String("config", "", "gateway configuration (YAML) for this Pi (required)")
	hub := fs.String("hub", "", "hub MQTT TLS address host:port (default: the config's hub.address)")
	claim := fs.String("claim-token", "", "file holding a one-time claim token")
	token := fs.String("token", "", "file holding a device token issued ahead of time (outpostctl token issue), instead of or with --claim-token")
	ca := fs.String("ca", os.Getenv("OUTPOST_CA"), "the hub's CA certificate (default $OUTPOST_CA)")
	binary := fs.String("binary", "dist", "gateway binary, or the directory make cross fills")
	board := fs.String("board", "auto", "auto|pi0|pi1|pi2|pi3|pi4|pi5|zero2: picks the armv6/armv7/arm64 build")
	pin := fs.Int("w1-pin", provision.DefaultW1Pin, "GPIO of the 1-Wire bus (dtoverlay=w1-gpio,gpiopin=N)")
	ssid := fs.String("wifi-ssid", "", "Wi-Fi network to join")
	wifiPass := fs.String("wifi-password-file", "", "file holding the Wi-Fi passphrase")
	country := fs.String("wifi-country", "", "Wi-Fi regulatory country: GB, DE, US …")
	hostname := fs.String("hostname", "", "the Pi's hostname (also its device_id when the config has none)")
	user := fs.String("user", provision.DefaultUser, "system user the gateway runs as")
	yes := fs.Bool("yes", false, "with --image and --device: overwrite the card without asking")
	dry := fs.Bool("dry-run", false, "check everything and list the changes; write nothing")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("flash prepare: unexpected arguments %v", fs.Args())
	case *image == "" && *device == "":
		return errors.New("flash prepare: give --image FILE, --device DEV, or both (write the image, then prepare the card)")
	case *cfgPath == "":
		return errors.New("flash prepare: --config is required (see configs/gateway.example.yaml)")
	case *ca == "":
		return errors.New("flash prepare: --ca (or OUTPOST_CA) is required: the gateway pins the hub's CA")
	case *claim == "" && *token == "":
		return errors.New("flash prepare: --claim-token (or --token) is required")
	}
	b, err := provision.ParseBoard(*board)
	if err != nil {
		return fmt.Errorf("flash prepare: %w", err)
	}
	o := provision.PrepareOptions{
		Options: provision.Options{Hub: *hub, User: *user, W1Pin: *pin, Hostname: *hostname,
			Writer: "outpostctl flash prepare", ValidateConfig: validateGatewayConfig},
		Board: b, Binary: *binary, DryRun: *dry,
	}
	for _, f := range []struct {
		path string
		dst  *[]byte
	}{{*cfgPath, &o.Config}, {*ca, &o.CA}, {*claim, &o.ClaimToken}, {*token, &o.DeviceToken}} {
		if f.path == "" {
			continue
		}
		if *f.dst, err = os.ReadFile(f.path); err != nil {
			return fmt.Errorf("flash prepare: %w", err)
		}
	}
	if *ssid != "" || *wifiPass != "" || *country != "" {
		if *ssid == "" || *wifiPass == "" || *country == "" {
			return errors.New("flash prepare: Wi-Fi needs --wifi-ssid, --wifi-password-file and --wifi-country together")
		}
		pw, err := os.ReadFile(*wifiPass)
		if err != nil {
			return fmt.Errorf("flash prepare: %w", err)
		}
		o.WiFi = &provision.WiFi{SSID: *ssid, Password: strings.TrimRight(string(pw), "\r\n"), Country: *country}
	}

	var res *provision.Result
	switch {
	case *device == "":
		res, err = prepareImage(*image, o)
	default:
		res, err = prepareDevice(e, *image, *device, *yes, o)
	}
	if err != nil {
		return fmt.Errorf("flash prepare: %w", err)
	}
	report(e.Stdout, res, o)
	return nil
}

func prepareImage(path string, o provision.PrepareOptions) (*provision.Result, error) {
	flag := os.O_RDWR
	if o.DryRun {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a file (for a card use --device)", path)
	}
	res, err := provision.Prepare(rw(f, o.DryRun), st.Size(), o)
	if err != nil {
		return nil, err
	}
	if !o.DryRun {
		if err := f.Sync(); err != nil {
			return nil, err
		}
	}
	return res, f.Close()
}

// prepareDevice edits the card, writing the image to it first when one is given.
func prepareDevice(e *Env, image, device string, yes bool, o provision.PrepareOptions) (*provision.Result, error) {
	dev, err := provision.DefaultDeviceChecker().Check(device)
	if err != nil {
		return nil, err
	}
	flag := os.O_RDWR | provision.Exclusive
	if o.DryRun {
		flag = os.O_RDONLY
	}
	card, err := os.OpenFile(dev, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w (mounted or in use?)", dev, err)
	}
	defer card.Close()
	cardSize, err := card.Seek(0, io.SeekEnd)
	if err != nil || cardSize == 0 {
		return nil, fmt.Errorf("%s: cannot tell its size (no card in the reader?): %v", dev, err)
	}
	if image != "" {
		img, err := os.Open(image)
		if err != nil {
			return nil, err
		}
		defer img.Close()
		st, err := img.Stat()
		if err != nil {
			return nil, err
		}
		if st.Size() > cardSize {
			return nil, fmt.Errorf("the image (%d bytes) is larger than %s (%d bytes)", st.Size(), dev, cardSize)
		}
		// Check everything on the image before the long write.
		check := o
		check.DryRun = true
		if _, err := provision.Prepare(rw(img, true), st.Size(), check); err != nil {
			return nil, err
		}
		if o.DryRun {
			fmt.Fprintf(e.Stderr, "would write %s (%d bytes) to %s, verify it, then prepare its boot partition\n", image, st.Size(), dev)
			return provision.Prepare(rw(img, true), st.Size(), o)
		}
		if !yes {
			fmt.Fprintf(e.Stderr, "This overwrites everything on %s (%.1f GB) with %s.\nType yes to go on: ", dev, float64(cardSize)/1e9, image)
			line, _ := bufio.NewReader(e.Stdin).ReadString('\n')
			if strings.TrimSpace(line) != "yes" {
				return nil, errors.New("not confirmed; nothing was written")
			}
		}
		sum, err := provision.WriteImage(e.Ctx, card, img, st.Size(), e.Stderr)
		if err != nil {
			return nil, err
		}
		if err := provision.VerifyImage(e.Ctx, card, st.Size(), sum, e.Stderr); err != nil {
			return nil, err
		}
		fmt.Fprintf(e.Stderr, "verified: sha256 %x\n", sum)
	}
	res, err := provision.Prepare(provision.AlignedDevice{F: rw(card, o.DryRun)}, cardSize, o)
	if err != nil {
		return nil, err
	}
	if !o.DryRun {
		if err := card.Sync(); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// rw is f as a device; a read-only one when nothing may be written.
func rw(f *os.File, readOnly bool) interface {
	io.ReaderAt
	io.WriterAt
} {
	if readOnly {
		return roFile{f}
	}
	return f
}

type roFile struct{ *os.File }

func (roFile) WriteAt([]byte, int64) (int, error) { return 0, errors.New("read-only (dry run)") }

func report(w io.Writer, r *provision.Result, o provision.PrepareOptions) {
	verb := "wrote"
	if o.DryRun {
		verb = "would write"
	}
	fmt.Fprintf(w, "boot partition %d (%q): %d-bit Raspberry Pi OS (%s)\n", r.Partition, r.Label, r.Image.Bits, r.Image.Evidence)
	fmt.Fprintf(w, "gateway build: %s (%s)\n", r.Arch, r.Binary)
	if r.ArchNote != "" {
		fmt.Fprintf(w, "note: %s\n", r.ArchNote)
	}
	if len(r.Files) > 0 {
		fmt.Fprintf(w, "%s: %s\n", verb, strings.Join(r.Files, ", "))
	}
	if len(r.Unchanged) > 0 {
		fmt.Fprintf(w, "already in place: %s\n", strings.Join(r.Unchanged, ", "))
	}
	if len(r.ConfigTxt) > 0 {
		fmt.Fprintf(w, "config.txt: %s\n", strings.Join(r.ConfigTxt, ", "))
	}
	if r.Chained {
		fmt.Fprintln(w, "kept the card's earlier firstrun.sh (Raspberry Pi Imager's settings): it runs first")
	}
	fmt.Fprintf(w, "space: %.1f MiB of %.1f MiB free on the boot partition\n", float64(r.Need)/(1<<20), float64(r.Free)/(1<<20))
	if !o.DryRun {
		fmt.Fprintln(w, "next: put the card in the Pi and power it. First boot installs the gateway (Bookworm reboots once);")
		fmt.Fprintln(w, "      it then connects to the hub. A failed setup leaves outpost-firstboot.log on the boot partition.")
	}
}
