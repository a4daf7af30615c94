// Command mochi-upstream serves upstream mochi-mqtt v2.7.9 as published
// (default options, its TLS listener, every client allowed, no store) for
// outpost-bench's throughput comparison:
//
//	(cd scripts/mochi-upstream && go build -o ../../bin/mochi-upstream .)
//	bin/outpost-bench throughput --broker mochi,mosquitto --core-bin bin/mochi-upstream
//
// It takes the arguments outpost-bench gives its own core: mochi-core
// --listen ADDR --pki DIR (the server certificate and key of that PKI).
package main

import (
	"crypto/tls"
	"flag"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "mochi-core" {
		args = args[1:]
	}
	fs := flag.NewFlagSet("mochi-upstream", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:8883", "TLS MQTT address")
	pki := fs.String("pki", "", "directory with server.crt and server.key")
	_ = fs.Parse(args)
	cert, err := tls.LoadX509KeyPair(filepath.Join(*pki, "server.crt"), filepath.Join(*pki, "server.key"))
	if err != nil {
		log.Fatal(err)
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: true})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		log.Fatal(err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if err := srv.AddListener(listeners.NewTCP(listeners.Config{ID: "tls", Address: *listen, TLSConfig: tc})); err != nil {
		log.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		log.Fatal(err)
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGTERM, os.Interrupt)
	<-ch
	_ = srv.Close()
}
