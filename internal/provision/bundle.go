package provision

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"embed"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"path"
	"regexp"
	"strconv"
	"strings"
	"text/template"

	"gopkg.in/yaml.v3"
)

// Where things go on the Pi.
const (
	ConfigDir      = "/etc/outpost"
	ConfigPath     = ConfigDir + "/gateway.yaml"
	CAPath         = ConfigDir + "/ca.crt"
	ClaimTokenPath = ConfigDir + "/claim.token"
	UnitPath       = "/etc/systemd/system/outpost-gateway.service"
	LogPath        = "/var/log/outpost-firstboot.log"
	DefaultDataDir = "/var/lib/outpost-gateway"
	DefaultBinary  = "/usr/local/bin/outpost-gateway"
	// RealBinary is where the binary really lives: a directory the service
	// user owns, because OTA updates replace it in place (new file beside
	// it, rename, the old one kept as .prev; firmware-ota/updater).
	// BinaryPath (DefaultBinary) is a symlink to it, for the operator's PATH.
	RealBinary   = "/opt/outpost/bin/outpost-gateway"
	DefaultUser  = "outpost"
	DefaultW1Pin = 4
	// BootDir is the directory on the boot partition that carries the gateway's files.
	BootDir = "outpost"
)

// Options are what the operator gives, for a card or a running Pi alike.
type Options struct {
	Config      []byte // the operator's gateway.yaml
	Hub         string // host:port of the hub's MQTT TLS listener; "" keeps hub.address
	CA          []byte // the hub's CA certificate (PEM)
	ClaimToken  []byte // the one-time claim token, installed as ClaimTokenPath
	DeviceToken []byte // optional: a device token issued ahead of time
	User        string // service user; DefaultUser when empty
	W1Pin       int    // 1-Wire GPIO; DefaultW1Pin when 0
	Hostname    string // optional
	WiFi        *WiFi  // optional
	BinaryPath  string // where the binary goes; DefaultBinary when empty
	// Writer names the tool in the generated files' comments.
	Writer string
	// ValidateConfig, when set, checks the final gateway configuration
	// (cmd/ passes the gateway's own Validate, which this package does not link).
	ValidateConfig func(yaml []byte) error
}

// WiFi is a network for the Pi to join.
type WiFi struct {
	SSID     string
	Password string // 8..63 characters, or the 64-hex-digit PSK
	Country  string // ISO 3166 code: GB, DE, US …
}

// settings are Options checked, with defaults and derived paths: what the
// templates see.
type settings struct {
	Writer         string
	User           string
	BinaryPath     string
	RealBinary     string
	ConfigDir      string
	ConfigPath     string
	CAPath         string
	ClaimTokenPath string
	DataDir        string
	TokenPath      string
	UnitPath       string
	LogPath        string
	StateDirectory string
	W1Pin          int
	Hostname       string
	WiFi           *wifiSettings
	FromBoot       bool
	RunCmd         string
	InstanceID     string
}

type wifiSettings struct{ SSID, PSK, Country string }

var (
	userRe     = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	hostnameRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	countryRe  = regexp.MustCompile(`^[A-Z]{2}$`)
	hexPSKRe   = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

// check validates o and derives the settings (DataDir comes from the config).
func (o *Options) check() (settings, error) {
	s := settings{Writer: o.Writer, User: o.User, BinaryPath: o.BinaryPath, RealBinary: RealBinary, W1Pin: o.W1Pin,
		ConfigDir: ConfigDir, ConfigPath: ConfigPath, CAPath: CAPath, ClaimTokenPath: ClaimTokenPath,
		UnitPath: UnitPath, LogPath: LogPath, Hostname: strings.ToLower(o.Hostname)}
	if s.Writer == "" {
		s.Writer = "Outpost"
	}
	if s.User == "" {
		s.User = DefaultUser
	}
	if s.BinaryPath == "" {
		s.BinaryPath = DefaultBinary
	}
	if s.W1Pin == 0 {
		s.W1Pin = DefaultW1Pin
	}
	var errs []error
	if !userRe.MatchString(s.User) || s.User == "root" {
		errs = append(errs, fmt.Errorf("user %q: want a system user name like outpost", s.User))
	}
	if !path.IsAbs(s.BinaryPath) || path.Clean(s.BinaryPath) != s.BinaryPath || strings.ContainsAny(s.BinaryPath, " '\"\\$`") {
		errs = append(errs, fmt.Errorf("binary path %q: want a clean absolute path", s.BinaryPath))
	}
	switch {
	case s.W1Pin == 2 || s.W1Pin == 3:
		errs = append(errs, fmt.Errorf("1-Wire pin GPIO%d is the I2C bus (SDA GPIO2, SCL GPIO3): pick another, GPIO4 is usual", s.W1Pin))
	case s.W1Pin < 0 || s.W1Pin > 27:
		errs = append(errs, fmt.Errorf("1-Wire pin GPIO%d: want a header GPIO 0..27", s.W1Pin))
	}
	if s.Hostname != "" && !hostnameRe.MatchString(s.Hostname) {
		errs = append(errs, fmt.Errorf("hostname %q: want letters, digits and '-', at most 63", o.Hostname))
	}
	if o.Hub != "" {
		if err := checkHub(o.Hub); err != nil {
			errs = append(errs, err)
		}
	}
	if err := checkCA(o.CA); err != nil {
		errs = append(errs, err)
	}
	if len(o.ClaimToken) == 0 && len(o.DeviceToken) == 0 {
		errs = append(errs, errors.New("no token: give a claim token (or a device token issued ahead of time)"))
	}
	if len(o.ClaimToken) > 0 {
		if err := checkToken("claim token", o.ClaimToken); err != nil {
			errs = append(errs, err)
		}
	}
	if len(o.DeviceToken) > 0 {
		if err := checkToken("device token", o.DeviceToken); err != nil {
			errs = append(errs, err)
		} else if strings.Count(strings.TrimSpace(string(o.DeviceToken)), ".") != 2 {
			errs = append(errs, errors.New("device token: not a JWT (three dot-separated parts)"))
		}
	}
	if o.WiFi != nil {
		w, err := o.WiFi.check()
		if err != nil {
			errs = append(errs, err)
		}
		s.WiFi = w
	}
	return s, errors.Join(errs...)
}

func checkHub(hub string) error {
	host, port, err := net.SplitHostPort(hub)
	if err != nil || host == "" {
		return fmt.Errorf("hub %q: want host:port of the hub's MQTT TLS listener, e.g. hub.example.org:8883", hub)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("hub %q: bad port", hub)
	}
	return nil
}

func checkCA(b []byte) error {
	if len(b) == 0 {
		return errors.New("no CA certificate: the gateway pins the hub's CA")
	}
	n := 0
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return fmt.Errorf("CA certificate: %w", err)
		}
		n++
	}
	if n == 0 {
		return errors.New("CA certificate: no PEM CERTIFICATE block")
	}
	return nil
}

func checkToken(what string, b []byte) error {
	t := strings.TrimSpace(string(b))
	switch {
	case t == "":
		return fmt.Errorf("%s is empty", what)
	case len(t) > 8192:
		return fmt.Errorf("%s is %d bytes: not a token", what, len(t))
	case strings.ContainsAny(t, " \t\r\n"):
		return fmt.Errorf("%s: one token on one line expected", what)
	}
	return nil
}

func (w *WiFi) check() (*wifiSettings, error) {
	var errs []error
	if w.SSID == "" || len(w.SSID) > 32 || strings.ContainsAny(w.SSID, "\r\n\x00") {
		errs = append(errs, fmt.Errorf("Wi-Fi SSID %q: want 1..32 bytes on one line", w.SSID))
	}
	cc := strings.ToUpper(w.Country)
	if !countryRe.MatchString(cc) {
		errs = append(errs, fmt.Errorf("Wi-Fi country %q: want the two-letter ISO 3166 code (GB, DE, US …); the radio stays off without it", w.Country))
	}
	psk := w.Password
	switch {
	case hexPSKRe.MatchString(psk):
		psk = strings.ToLower(psk)
	case len(psk) >= 8 && len(psk) <= 63:
		// The WPA PSK (IEEE 802.11i): PBKDF2-SHA1(passphrase, SSID, 4096, 32).
		// Raspberry Pi Imager stores this, not the passphrase.
		k, err := pbkdf2.Key(sha1.New, psk, []byte(w.SSID), 4096, 32)
		if err != nil {
			errs = append(errs, fmt.Errorf("Wi-Fi password: %w", err))
		}
		psk = hex.EncodeToString(k)
	default:
		errs = append(errs, errors.New("Wi-Fi password: want 8..63 characters (or the 64-hex-digit PSK)"))
	}
	return &wifiSettings{SSID: w.SSID, PSK: psk, Country: cc}, errors.Join(errs...)
}

// ---- the gateway configuration ----

// renderConfig rewrites the operator's gateway.yaml for the Pi: hub.address
// (when given), hub.ca, hub.token_file, hub.claim_token_file (with a claim
// token) and clock.source ntp (a Pi has no RTC), device_id from the
// hostname when the file has none. Comments and
// everything else are kept. It returns the new YAML and the data directory.
func renderConfig(o *Options, s *settings) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(o.Config, &doc); err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, errors.New("gateway config: the top level is not a mapping")
	}
	s.DataDir = DefaultDataDir
	if v := lookup(root, "data_dir"); v != nil && v.Value != "" {
		s.DataDir = v.Value
	}
	if !path.IsAbs(s.DataDir) || strings.ContainsAny(s.DataDir, " '\"\\$`") {
		return nil, fmt.Errorf("gateway config: data_dir %q: want a plain absolute path", s.DataDir)
	}
	s.DataDir = path.Clean(s.DataDir)
	s.TokenPath = path.Join(s.DataDir, "gateway.token")
	s.StateDirectory = ""
	if s.DataDir == DefaultDataDir {
		s.StateDirectory = path.Base(DefaultDataDir)
	}
	if o.Hub != "" {
		set(root, o.Hub, "hub", "address")
	}
	set(root, s.CAPath, "hub", "ca")
	set(root, s.TokenPath, "hub", "token_file")
	if len(o.ClaimToken) > 0 {
		set(root, s.ClaimTokenPath, "hub", "claim_token_file")
	}
	set(root, "ntp", "clock", "source")
	if v := lookup(root, "device_id"); (v == nil || v.Value == "") && s.Hostname != "" {
		set(root, s.Hostname, "device_id")
	}
	var body bytes.Buffer
	enc := yaml.NewEncoder(&body)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("gateway config: %w", err)
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "# Installed by %s for this Raspberry Pi: hub.ca, hub.token_file,\n", s.Writer)
	fmt.Fprintf(&out, "# hub.claim_token_file (with a claim token) and clock.source were set\n")
	fmt.Fprintf(&out, "# here; the rest is the operator's file. While hub.token_file is missing,\n")
	fmt.Fprintf(&out, "# the gateway registers with the one-time claim token %s\n", s.ClaimTokenPath)
	fmt.Fprintf(&out, "# (0600, owner %s) and writes the device token it receives there.\n", s.User)
	out.Write(body.Bytes())
	return out.Bytes(), nil
}

func lookup(m *yaml.Node, keys ...string) *yaml.Node {
	for _, k := range keys {
		if m == nil || m.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == k {
				next = m.Content[i+1]
			}
		}
		m = next
	}
	return m
}

// set puts value at keys, creating mappings on the way (a null or missing
// value becomes a mapping when more keys follow).
func set(m *yaml.Node, value string, keys ...string) {
	for i, k := range keys {
		var v *yaml.Node
		for j := 0; j+1 < len(m.Content); j += 2 {
			if m.Content[j].Value == k {
				v = m.Content[j+1]
			}
		}
		last := i == len(keys)-1
		if v == nil {
			v = &yaml.Node{Kind: yaml.ScalarNode}
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, v)
		}
		if last {
			if v.Kind != yaml.ScalarNode || v.Value != value {
				v.Kind, v.Tag, v.Value, v.Style, v.Content = yaml.ScalarNode, "!!str", value, 0, nil
			}
			return
		}
		if v.Kind != yaml.MappingNode {
			v.Kind, v.Tag, v.Value, v.Style, v.Content = yaml.MappingNode, "!!map", "", 0, nil
		}
		m = v
	}
}

// ---- templates ----

//go:embed templates/*.tmpl
var templateFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"dir": path.Dir,
	// sh quotes for the shell: 'it'"'"'s'.
	"sh": func(s string) string { return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'" },
	// yaml quotes a scalar (a JSON string is a YAML double-quoted scalar).
	"yaml": func(s string) (string, error) {
		b, err := json.Marshal(s)
		return string(b), err
	},
}).ParseFS(templateFS, "templates/*.tmpl"))

func render(name string, s *settings) ([]byte, error) {
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, name+".tmpl", s); err != nil {
		return nil, fmt.Errorf("provision: template %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// File is one file to write.
type File struct {
	Name string // relative to the boot partition or the staging directory
	Data []byte
	Mode uint32 // on the Pi (the FAT partition has no modes)
}

// stage builds the files setup.sh installs from: its own directory's content.
func stage(o *Options, s *settings, binary []byte) ([]File, []byte, error) {
	cfg, err := renderConfig(o, s)
	if err != nil {
		return nil, nil, err
	}
	if o.ValidateConfig != nil {
		if err := o.ValidateConfig(cfg); err != nil {
			return nil, nil, fmt.Errorf("the gateway configuration for the Pi is not valid: %w", err)
		}
	}
	unit, err := render("outpost-gateway.service", s)
	if err != nil {
		return nil, nil, err
	}
	setup, err := render("setup.sh", s)
	if err != nil {
		return nil, nil, err
	}
	fs := []File{
		{"outpost-gateway", binary, 0o755},
		{"gateway.yaml", cfg, 0o640},
		{"ca.crt", o.CA, 0o644},
		{"outpost-gateway.service", unit, 0o644},
	}
	if len(o.ClaimToken) > 0 {
		fs = append(fs, File{"claim.token", []byte(strings.TrimSpace(string(o.ClaimToken)) + "\n"), 0o600})
	}
	if len(o.DeviceToken) > 0 {
		fs = append(fs, File{"gateway.token", []byte(strings.TrimSpace(string(o.DeviceToken)) + "\n"), 0o600})
	}
	fs = append(fs, File{"setup.sh", setup, 0o755})
	return fs, cfg, nil
}

// instanceID names a cloud-init instance after the content it installs, so
// preparing the card again with other settings runs user-data again.
func instanceID(files []File) string {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s %d\n", f.Name, len(f.Data))
		h.Write(f.Data)
	}
	return "outpost-" + hex.EncodeToString(h.Sum(nil))[:16]
}
