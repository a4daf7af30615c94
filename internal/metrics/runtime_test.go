package metrics

import (
	"regexp"
	"strconv"
	"testing"
)

func TestGoRuntime(t *testing.T) {
	var r Registry
	r.GoRuntime()
	text := r.Text()
	for _, m := range goRuntime {
		re := regexp.MustCompile(`(?m)^` + m.name + ` (\S+)$`)
		got := re.FindStringSubmatch(text)
		if got == nil {
			t.Fatalf("%s missing from:\n%s", m.name, text)
		}
		v, err := strconv.ParseFloat(got[1], 64)
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		// Every exported class is non-zero in a running test binary except
		// memory already returned to the OS.
		if v <= 0 && m.name != "go_heap_released_bytes" && m.name != "go_heap_free_bytes" && m.name != "go_heap_unused_bytes" {
			t.Errorf("%s = %v, want > 0", m.name, v)
		}
	}
	if !regexp.MustCompile(`(?m)^# TYPE go_gc_cycles_total counter$`).MatchString(text) {
		t.Errorf("go_gc_cycles_total not a counter:\n%s", text)
	}
}
