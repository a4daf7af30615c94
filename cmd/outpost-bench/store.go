package main

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

type storeOpts struct {
	benchtime string // go test -benchtime
	peak      float64
}

type storeRow struct {
	name          string
	rowsPerSec    float64
	rowsPerCommit float64
}

type storeSummary struct {
	opts storeOpts
	rows []storeRow
	err  error
}

// store runs hub/store's BenchmarkIngest (the group-commit writer, each
// device waiting for its commit as the broker hook does) on the broker CPU.
func (b *bench) store(ctx context.Context, o storeOpts) *storeSummary {
	s := &storeSummary{opts: o}
	bin := filepath.Join(b.work, "store.test")
	b.progress("store: building the hub/store test binary")
	build := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, "./hub/store")
	build.Dir = b.repo
	if out, err := build.CombinedOutput(); err != nil {
		s.err = fmt.Errorf("go test -c ./hub/store: %v: %s", err, out)
		return s
	}
	argv := b.pinned(bin, "-test.run", "^$", "-test.bench", "Ingest", "-test.benchtime", o.benchtime)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = filepath.Join(b.repo, "hub", "store")
	out, err := cmd.CombinedOutput()
	if err != nil {
		s.err = fmt.Errorf("store benchmark: %v: %s", err, out)
		return s
	}
	if s.rows, s.err = parseIngest(string(out)); s.err == nil && len(s.rows) == 0 {
		s.err = fmt.Errorf("no BenchmarkIngest results in: %s", out)
	}
	for _, r := range s.rows {
		b.progress("store %s: %.0f rows/s (%.1f rows/commit)", r.name, r.rowsPerSec, r.rowsPerCommit)
	}
	return s
}

var benchLine = regexp.MustCompile(`^Benchmark(Ingest\S*?)(?:-\d+)?\s+\d+\s+`)

// parseIngest reads `go test -bench` output lines such as
// "BenchmarkIngest/devices=10-2  20000  5120 ns/op  35000 rows/s  12.5 rows/commit".
func parseIngest(out string) ([]storeRow, error) {
	var rows []storeRow
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		m := benchLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		r := storeRow{name: m[1]}
		f := strings.Fields(line)
		for i := 1; i+1 < len(f); i++ {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "rows/s":
				r.rowsPerSec = v
			case "rows/commit":
				r.rowsPerCommit = v
			}
		}
		if r.rowsPerSec == 0 {
			return nil, fmt.Errorf("no rows/s in %q", line)
		}
		rows = append(rows, r)
	}
	return rows, sc.Err()
}

func (s *storeSummary) markdown() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "`go test -run '^$' -bench Ingest -benchtime %s ./hub/store` on the broker CPU: rows/s through the group-commit "+
		"writer with N devices each waiting for its commit (the broker hook's pattern), WAL, synchronous=NORMAL.", s.opts.benchtime)
	if s.opts.peak > 0 {
		fmt.Fprintf(&sb, " Compared with the hub's peak median broker rate above, %.0f msg/s (one record per message).", s.opts.peak)
	}
	sb.WriteString("\n\n")
	if s.err != nil {
		fmt.Fprintf(&sb, "**FAILED**: %s\n\n", oneLine(s.err.Error()))
		return sb.String()
	}
	t := table{head: []string{"benchmark", "rows/s", "rows per commit", "× hub peak msg/s"}}
	for _, r := range s.rows {
		x := "–"
		if s.opts.peak > 0 {
			x = fmt.Sprintf("%.1f×", r.rowsPerSec/s.opts.peak)
		}
		t.add(r.name, fmt.Sprintf("%.0f", r.rowsPerSec), fmt.Sprintf("%.1f", r.rowsPerCommit), x)
	}
	sb.WriteString(t.String())
	return sb.String()
}

func (s *storeSummary) targets() []target {
	what := "store ingest headroom (10 concurrent devices, as in the throughput runs)"
	if s.err != nil {
		return []target{{what, "≥ 3× hub peak msg/s", "failed", ptr(false)}}
	}
	if s.opts.peak <= 0 {
		return []target{{what, "≥ 3× hub peak msg/s", "no hub peak measured", nil}}
	}
	for _, r := range s.rows {
		if strings.HasSuffix(r.name, "devices=10") {
			x := r.rowsPerSec / s.opts.peak
			return []target{{what, "≥ 3× hub peak msg/s", fmt.Sprintf("%.0f rows/s = %.1f× %.0f msg/s", r.rowsPerSec, x, s.opts.peak), ptr(x >= 3)}}
		}
	}
	return []target{{what, "≥ 3× hub peak msg/s", "no devices=10 result", nil}}
}
