package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"

	"github.com/outpost-iot/outpost/gateway"
	"github.com/outpost-iot/outpost/internal/config"
)

func calibratePH(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("outpost-gateway calibrate ph", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("config", "/etc/outpost/gateway.yaml", "gateway configuration")
	sensor := fs.String("sensor", "", "pH sensor name from the configuration")
	buffer := fs.Float64("buffer", 0, "buffer pH (4.00, 7.00, 10.00)")
	temp := fs.Float64("temp", math.NaN(), "buffer temperature in °C (default 25)")
	clear := fs.Bool("clear", false, "remove existing points first")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sensor == "" || *buffer == 0 {
		return fmt.Errorf("calibrate ph: --sensor and --buffer are required")
	}
	cfg := gateway.DefaultConfig()
	if err := config.LoadYAML(*file, &cfg); err != nil {
		return err
	}
	env, closeAll, err := hostEnv(nil)
	if err != nil {
		return err
	}
	defer closeAll()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	msg, err := gateway.CalibratePH(ctx, cfg, env.I2C, gateway.CalibrateRequest{Sensor: *sensor, Buffer: *buffer, TempC: *temp, Clear: *clear})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, msg)
	return nil
}
