package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"periph.io/x/conn/v3/i2c"
	"periph.io/x/conn/v3/i2c/i2creg"
	"periph.io/x/host/v3"

	"github.com/outpost-iot/outpost/drivers/catalog"
)

func hostEnv(buses []string) (catalog.Env, func(), error) {
	if _, err := host.Init(); err != nil {
		return catalog.Env{}, nil, fmt.Errorf("periph host init: %w", err)
	}
	var opened []i2c.BusCloser
	env := catalog.Env{I2CBuses: buses, I2C: func(name string) (i2c.Bus, error) {
		b, err := i2creg.Open(name)
		if err != nil {
			return nil, err
		}
		opened = append(opened, b)
		return b, nil
	}}
	return env, func() {
		for _, b := range opened {
			_ = b.Close()
		}
	}, nil
}

func scan(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("outpost-gateway scan", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var buses multi
	fs.Var(&buses, "bus", "I2C bus to probe (repeatable; default 1)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	env, closeAll, err := hostEnv(buses)
	if err != nil {
		return err
	}
	defer closeAll()
	found, err := catalog.Scan(env)
	for _, f := range found {
		fmt.Fprintln(stdout, f.String())
	}
	if len(found) == 0 && err == nil {
		fmt.Fprintln(stderr, "no sensors found (is I2C enabled? is dtoverlay=w1-gpio set? see docs/raspberry-pi.md)")
	}
	return err
}

type multi []string

func (m *multi) String() string     { return fmt.Sprint(*m) }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func calibrate(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "ph" {
		return errors.New("calibrate: usage: outpost-gateway calibrate ph --config FILE --sensor NAME --buffer 7.00")
	}
	return calibratePH(args[1:], stdout, stderr)
}
