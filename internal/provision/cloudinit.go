package provision

import (
	"bytes"
	"errors"
	"fmt"

	"gopkg.in/yaml.v3"
)

// runCmd is what cloud-init runs: setup.sh, while it is on the boot
// partition (it removes itself once done; Trixie mounts the partition on
// /boot/firmware).
const runCmd = "test ! -f /boot/firmware/" + BootDir + "/setup.sh || bash /boot/firmware/" + BootDir + "/setup.sh"

// userData returns the cloud-init user-data: ours when the card has none
// (or only comments, as Raspberry Pi OS ships it), else the card's — say
// Raspberry Pi Imager's users and SSH keys — with our runcmd entry and
// hostname merged in, everything else kept. Running it twice adds nothing.
func userData(existing []byte, s *settings) ([]byte, error) {
	var doc yaml.Node
	if len(bytes.TrimSpace(existing)) > 0 {
		if !bytes.HasPrefix(existing, []byte("#cloud-config")) {
			return nil, errors.New("user-data on the card is not #cloud-config (a script or multipart?): remove it, or make it #cloud-config, then run again")
		}
		if err := yaml.Unmarshal(existing, &doc); err != nil {
			return nil, fmt.Errorf("user-data on the card: %w", err)
		}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 || (doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null") {
		return render("user-data", s)
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, errors.New("user-data on the card: the top level is not a mapping")
	}
	if s.Hostname != "" {
		set(root, s.Hostname, "hostname")
		if lookup(root, "manage_etc_hosts") == nil {
			root.Content = append(root.Content,
				&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "manage_etc_hosts"},
				&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
		}
	}
	rc := lookup(root, "runcmd")
	if rc == nil || rc.Kind != yaml.SequenceNode {
		if rc != nil && rc.Tag != "!!null" {
			return nil, errors.New("user-data on the card: runcmd is not a list")
		}
		seq := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		if rc == nil {
			root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "runcmd"}, seq)
		} else {
			*rc = *seq
		}
		rc = lookup(root, "runcmd")
	}
	found := false
	for _, c := range rc.Content {
		if c.Kind == yaml.ScalarNode && c.Value == runCmd {
			found = true
		}
	}
	if !found {
		rc.Content = append(rc.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: runCmd})
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("user-data: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("user-data: %w", err)
	}
	out := b.Bytes()
	if !bytes.HasPrefix(out, []byte("#cloud-config")) {
		out = append([]byte("#cloud-config\n"), out...)
	}
	return out, nil
}
