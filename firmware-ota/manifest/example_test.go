package manifest_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/outpost-iot/outpost/firmware-ota/manifest"
)

// The release flow: create the release key once (offline), sign each
// artifact, and on the gateway verify it against the trusted public keys
// and check that it fits the device.
func Example() {
	dir, err := os.MkdirTemp("", "outpost-release")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = os.RemoveAll(dir) }()

	if _, err := manifest.Keygen(dir, false); err != nil {
		fmt.Println(err)
		return
	}
	key, err := manifest.LoadPrivateKey(filepath.Join(dir, manifest.PrivateKeyFile))
	if err != nil {
		fmt.Println(err)
		return
	}
	artifact := filepath.Join(dir, "outpost-gateway")
	if err := os.WriteFile(artifact, []byte("firmware image"), 0o644); err != nil {
		fmt.Println(err)
		return
	}
	target := manifest.Target{OS: "linux", Arch: "arm", Variant: "armv6"}
	if _, err := manifest.Sign(key, artifact, "1.4.0", target, "pH drift fix"); err != nil {
		fmt.Println(err)
		return
	}

	// On the gateway: trusted keys come from its configuration.
	trusted, err := manifest.LoadKeyring(filepath.Join(dir, manifest.PublicKeyFile))
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := manifest.Verify(trusted, artifact)
	if err != nil {
		fmt.Println(err)
		return
	}
	installed, _ := manifest.ParseVersion("1.3.2")
	host := manifest.Target{OS: "linux", Arch: "arm", Variant: "armv7", Board: "Raspberry Pi 3 Model B Rev 1.2"}
	fmt.Println(m.Version, m.Size, manifest.TargetMatches(m.Target, host), manifest.Compare(m.Version, installed) > 0)
	// Output: 1.4.0 14 true true
}
