package gateway

import (
	"fmt"
	"sync"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"

	"github.com/outpost-iot/outpost/gateway/rules"
)

// actions drives GPIO outputs (relay, buzzer) while matching alerts are active.
type actions struct {
	list   []Action
	pins   []gpio.PinOut
	mu     sync.Mutex
	active []map[string]bool // per action: active alert keys
}

func newActions(list []Action, hostReady bool) (*actions, error) {
	a := &actions{list: list, pins: make([]gpio.PinOut, len(list)), active: make([]map[string]bool, len(list))}
	for i, x := range list {
		p := gpioreg.ByName(x.GPIO)
		if p == nil {
			return nil, fmt.Errorf("gateway: actions[%d].gpio: no pin %q on this board", i, x.GPIO)
		}
		a.pins[i] = p
		a.active[i] = map[string]bool{}
		if err := p.Out(level(false, x.ActiveLow)); err != nil {
			return nil, fmt.Errorf("gateway: actions[%d].gpio %s: %w", i, x.GPIO, err)
		}
	}
	return a, nil
}

func level(on, activeLow bool) gpio.Level {
	if activeLow {
		return gpio.Level(!on)
	}
	return gpio.Level(on)
}

func (a *actions) apply(e rules.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	key := e.Rule + "\x00" + e.Sensor
	for i, x := range a.list {
		if (x.Rule != "" && x.Rule != e.Rule) || (x.Sensor != "" && x.Sensor != e.Sensor) {
			continue
		}
		if e.State == rules.Raised {
			a.active[i][key] = true
		} else {
			delete(a.active[i], key)
		}
		_ = a.pins[i].Out(level(len(a.active[i]) > 0, x.ActiveLow))
	}
}

// off releases every output at shutdown.
func (a *actions) off() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, x := range a.list {
		_ = a.pins[i].Out(level(false, x.ActiveLow))
	}
}
