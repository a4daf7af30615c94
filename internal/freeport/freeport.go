// Package freeport picks loopback TCP ports for child processes to listen
// on (tests and the benchmark start brokers as processes). The port is free
// when picked and closed again before the child binds it, so it comes from
// below the kernel's ephemeral range when there is room: a port from ":0"
// is an ephemeral one and can be taken meanwhile as the local port of any
// outgoing connection (an e2e hub failed with "address already in use").
// A process never hands the same port out twice.
package freeport

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// low is the lowest port picked.
const low = 10000

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// Port returns a loopback TCP port that was free when picked.
func Port() (int, error) {
	mu.Lock()
	defer mu.Unlock()
	if hi := ephemeralLow(); hi-low >= 1000 {
		start := rand.IntN(hi - low)
		for i := range 200 {
			p := low + (start+i)%(hi-low)
			if given[p] {
				continue
			}
			l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
			if err != nil {
				continue
			}
			l.Close()
			given[p] = true
			return p, nil
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addr is Port as "127.0.0.1:port".
func Addr() (string, error) {
	p, err := Port()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

// ephemeralLow is the lowest port of the kernel's ephemeral range (0 if
// unknown).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[0])
	return n
}
