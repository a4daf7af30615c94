package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// table is a markdown table.
type table struct {
	head []string
	rows [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) String() string {
	var sb strings.Builder
	sb.WriteString("| " + strings.Join(t.head, " | ") + " |\n|")
	for range t.head {
		sb.WriteString("---|")
	}
	sb.WriteString("\n")
	for _, r := range t.rows {
		sb.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
	return sb.String()
}

// median of xs (the mean of the middle two for an even count); 0 if empty.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func medianDur(ds []time.Duration) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return time.Duration(median(xs))
}

// fmtDur prints a latency with sensible precision.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < time.Millisecond:
		return fmt.Sprintf("%d µs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.3f s", d.Seconds())
	}
}

// verdict formats a target check.
func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**missed**"
}

// target is one line of the summary of targets.
type target struct {
	what, want, got string
	ok              *bool // nil: not measured
}

func targetTable(ts []target) string {
	t := table{head: []string{"target", "wanted", "measured", "verdict"}}
	for _, x := range ts {
		v := "not measured"
		if x.ok != nil {
			v = verdict(*x.ok)
		}
		t.add(x.what, x.want, x.got, v)
	}
	return t.String()
}

func ptr[T any](v T) *T { return &v }

// oneLine makes text safe for a table cell.
func oneLine(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ", "|", "/").Replace(strings.TrimSpace(s))
}
