package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outpost-iot/outpost/certs"
)

// bench is the environment every scenario runs in.
type bench struct {
	repo      string // module root (for the store benchmark)
	hubBin    string
	mosqBin   string
	coreBin   string // "": this binary's mochi-core command
	taskset   string
	work      string // scratch directory
	pki       certs.Paths
	ca        *tls.Config
	pin       bool
	brokerCPU int
	genCPU    int
	log       io.Writer // progress
	seq       int       // broker directories
	nproc     string    // before this process is pinned (nproc follows affinity)
	hubEnv    []string  // extra environment of the hub process
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.log, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// tlsConfig trusts the bench CA only. No session cache: every connection
// is a full handshake.
func (b *bench) tlsConfig() *tls.Config {
	c := b.ca.Clone()
	c.ServerName = "127.0.0.1"
	return c
}

func (b *bench) httpClient(timeout time.Duration) *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: b.tlsConfig()}, Timeout: timeout}
}

// setup creates the scratch directory and the PKI, raises the open-file
// limit (children inherit it) and pins this process to the generator CPU.
func (b *bench) setup() error {
	var err error
	if b.work == "" {
		if b.work, err = os.MkdirTemp("", "outpost-bench-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(b.work, 0o700); err != nil {
		return err
	}
	// The hub's own PKI code (what `serve` does on first start), made once.
	if b.pki, _, err = certs.EnsureHubPKI(filepath.Join(b.work, "pki"), nil); err != nil {
		return err
	}
	if b.ca, err = certs.ClientTLS(b.pki.CACert); err != nil {
		return err
	}
	if out, err := exec.Command("nproc").Output(); err == nil {
		b.nproc = strings.TrimSpace(string(out))
	}
	if err := raiseNoFile(); err != nil {
		b.progress("warning: %v", err)
	}
	if b.pin {
		if runtime.NumCPU() < 2 || b.brokerCPU == b.genCPU {
			b.progress("warning: %d CPU(s), broker CPU %d, generator CPU %d: not pinning", runtime.NumCPU(), b.brokerCPU, b.genCPU)
			b.pin = false
		} else if b.taskset, err = exec.LookPath("taskset"); err != nil {
			b.progress("warning: taskset not found (util-linux): not pinning")
			b.pin = false
		} else if err := pinSelf(b.genCPU); err != nil {
			return fmt.Errorf("pin generator to CPU %d: %w", b.genCPU, err)
		}
	}
	return nil
}

// raiseNoFile sets the soft RLIMIT_NOFILE to the hard limit.
func raiseNoFile() error {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		return err
	}
	if r.Cur < r.Max {
		r.Cur = r.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
			return fmt.Errorf("raise open files to %d: %w", r.Max, err)
		}
	}
	if r.Cur < 10240 { // 10,000 connections plus the process's own files
		return fmt.Errorf("open-file limit %d: the 10,000-connection run needs ≥ 10,240 (ulimit -n)", r.Cur)
	}
	return nil
}

// pinSelf binds every thread of this process to cpu and sizes GOMAXPROCS to
// it. Threads the runtime starts later inherit the mask of the thread that
// creates them.
func pinSelf(cpu int) error {
	var set unix.CPUSet
	set.Set(cpu)
	for range 2 { // a thread created during the first pass is caught by the second
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
				return err
			}
		}
	}
	runtime.GOMAXPROCS(1)
	return nil
}

// machine describes the machine for the report's Machine section.
func (b *bench) machine() string {
	var sb strings.Builder
	run := func(name string, args ...string) string {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil && len(out) == 0 { // mosquitto -h prints its version and exits 3
			return fmt.Sprintf("(%s: %v)", name, err)
		}
		return strings.TrimRight(string(out), "\n ") // keep free's leading column spaces
	}
	model := "unknown"
	if c, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(c), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	load, _ := os.ReadFile("/proc/loadavg")
	mosq := strings.SplitN(run(b.mosqBin, "-h"), "\n", 2)[0]
	fmt.Fprintf(&sb, "- Date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&sb, "- `nproc`: %s; CPU: %s\n", b.nproc, model)
	fmt.Fprintf(&sb, "- Kernel: %s; %s\n", unix.ByteSliceToString(uts.Release[:]), run("go", "version"))
	fmt.Fprintf(&sb, "- Brokers: %s; %s\n", run(b.hubBin, "version"), mosq)
	if len(b.hubEnv) > 0 {
		fmt.Fprintf(&sb, "- Hub environment: `%s`\n", strings.Join(b.hubEnv, " "))
	}
	if b.pin {
		fmt.Fprintf(&sb, "- Pinning: broker on CPU %d (`taskset -c %d`), generator on CPU %d (`sched_setaffinity`, GOMAXPROCS=1)\n", b.brokerCPU, b.brokerCPU, b.genCPU)
	} else {
		sb.WriteString("- Pinning: none\n")
	}
	if f := strings.Fields(string(load)); len(f) >= 3 {
		fmt.Fprintf(&sb, "- Load average at start: %s (the machine is shared: other jobs may run beside the bench)\n", strings.Join(f[:3], " "))
	}
	fmt.Fprintf(&sb, "\n`free -g`:\n```\n%s\n```\n", run("free", "-g"))
	return sb.String()
}
