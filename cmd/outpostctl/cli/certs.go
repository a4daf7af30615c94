package cli

import (
	"fmt"

	"github.com/outpost-iot/outpost/certs"
)

func init() {
	register("certs init", "create a CA and a hub server certificate in --dir", certsInit)
	register("certs server", "reissue the hub's server certificate with the same CA: certs server [--dir DIR] [--host NAME]...", certsServer)
	register("certs device", "issue a device client certificate: certs device [--dir DIR] ID", certsDevice)
}

func certsInit(e *Env, args []string) error {
	fs := newFlags("certs init", e)
	dir := fs.String("dir", "certs", "PKI directory")
	force := fs.Bool("force", false, "overwrite existing files")
	var hosts strs
	fs.Var(&hosts, "host", "extra server name or IP (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p, err := certs.InitCA(*dir, hosts, *force)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "CA certificate:     %s\nCA key:             %s\nserver certificate: %s\nserver key:         %s\n", p.CACert, p.CAKey, p.ServerCert, p.ServerKey)
	return nil
}

func certsDevice(e *Env, args []string) error {
	fs := newFlags("certs device", e)
	dir := fs.String("dir", "certs", "PKI directory holding the CA")
	force := fs.Bool("force", false, "overwrite existing files")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("certs device: give exactly one device ID")
	}
	crt, key, err := certs.IssueDevice(*dir, fs.Arg(0), *force)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "certificate: %s\nkey:         %s\n", crt, key)
	return nil
}

func certsServer(e *Env, args []string) error {
	fs := newFlags("certs server", e)
	dir := fs.String("dir", "certs", "PKI directory holding the CA (for a hub's own PKI: DATA_DIR/pki)")
	var hosts strs
	fs.Var(&hosts, "host", "extra server name or IP (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p, err := certs.IssueServer(*dir, hosts, true)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "server certificate: %s\nserver key:         %s\n(restart the hub to use it)\n", p.ServerCert, p.ServerKey)
	return nil
}
