package rules_test

import (
	"fmt"
	"time"

	"github.com/outpost-iot/outpost/gateway/rules"
)

func Example() {
	cfg, err := rules.ParseConfig([]byte(`
rules:
  - name: temperature-low
    sensors: temp-*
    raise: "< 10"
    clear: "> 10.5"
    message: "${sensor} is ${value} °C"
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	e, err := rules.New(cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	start := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	var events []rules.Event // reused: steady state does not allocate
	for i, v := range []float64{11, 9.8, 10.2, 9.9, 10.7} {
		events = e.Observe(events[:0], rules.Reading{Sensor: "temp-1", Value: v, Time: start.Add(time.Duration(i) * time.Second)})
		for _, ev := range events {
			fmt.Println(ev.Time.Format(time.TimeOnly), ev.State, ev.Rule, ev.Message)
		}
	}
	// Output:
	// 12:00:01 raised temperature-low temp-1 is 9.8 °C
	// 12:00:04 cleared temperature-low temperature-low cleared: temp-1 reading 10.7
}

func ExampleConfig_Validate() {
	_, err := rules.ParseConfig([]byte(`
rules:
  - name: avg
    sensors: temp-*
    window: {type: tumbling, size: 0s}
    aggregate: mean
    raise: "< 10"
    clear: "< 11"
`))
	fmt.Println(err)
	// Output:
	// invalid alert rules:
	// 	rules[0].window.size: must be > 0 and at most 168h0m0s
	// 	rules[0].aggregate: "mean" unknown (want avg, min, max, last, count or stddev)
	// 	rules[0].clear: "< 11" overlaps raise "< 10": a value could both raise and clear the alert; leave a gap for hysteresis
}
