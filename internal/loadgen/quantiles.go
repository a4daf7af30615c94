package loadgen

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Quantiles summarise a latency sample.
type Quantiles struct {
	N             int
	P50, P99, Max time.Duration
}

func (q Quantiles) String() string {
	if q.N == 0 {
		return "n/a"
	}
	return fmt.Sprintf("p50 %v p99 %v max %v (n=%d)", round(q.P50), round(q.P99), round(q.Max), q.N)
}

func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= 100*time.Microsecond:
		return d.Round(time.Microsecond)
	default:
		return d
	}
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1, nearest rank) of sorted.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// QuantilesOf sorts d in place and summarises it.
func QuantilesOf(d []time.Duration) Quantiles { return quantiles(d) }

func quantiles(d []time.Duration) Quantiles {
	if len(d) == 0 {
		return Quantiles{}
	}
	slices.Sort(d)
	return Quantiles{N: len(d), P50: Quantile(d, 0.50), P99: Quantile(d, 0.99), Max: d[len(d)-1]}
}
