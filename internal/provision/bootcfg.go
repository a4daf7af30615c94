package provision

import (
	"fmt"
	"strconv"
	"strings"
)

// forEachGlobal calls fn with every active line (trimmed, comments and
// blank lines skipped) that applies to every board: before the first
// conditional section, or after an [all]. Lines under [pi4], [cm5],
// [gpio4=1] and the other filters are skipped.
func forEachGlobal(text string, fn func(i int, line string)) {
	global := true
	for i, raw := range strings.Split(text, "\n") {
		l := strings.TrimSpace(raw)
		switch {
		case strings.HasPrefix(l, "["):
			global = strings.EqualFold(l, "[all]")
		case l == "" || strings.HasPrefix(l, "#"):
		case global:
			fn(i, l)
		}
	}
}

func truthy(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "on", "1", "true", "yes", "okay":
		return true
	}
	return false
}

// i2cSetting returns whether line sets the ARM I2C bus, and to what.
// dtparam=i2c_arm=on, dtparam=i2c=on and lists like dtparam=i2c_arm=on,spi=on.
func i2cSetting(line string) (set, on bool) {
	v, ok := strings.CutPrefix(line, "dtparam=")
	if !ok {
		return false, false
	}
	for _, p := range strings.Split(v, ",") {
		k, val, _ := strings.Cut(p, "=")
		if k = strings.TrimSpace(k); k == "i2c_arm" || k == "i2c" {
			set, on = true, truthy(val)
		}
	}
	return set, on
}

// w1Pin returns the GPIO of a w1-gpio overlay line (4 when not given).
func w1Pin(line string) (int, bool) {
	v, ok := strings.CutPrefix(line, "dtoverlay=")
	if !ok {
		return 0, false
	}
	parts := strings.Split(v, ",")
	if name := strings.TrimSpace(parts[0]); name != "w1-gpio" && name != "w1-gpio-pullup" {
		return 0, false
	}
	pin := 4
	for _, p := range parts[1:] {
		if k, val, _ := strings.Cut(p, "="); strings.TrimSpace(k) == "gpiopin" {
			n, err := strconv.Atoi(strings.TrimSpace(val))
			if err != nil {
				return 0, false
			}
			pin = n
		}
	}
	return pin, true
}

// I2CLine and W1Line are the config.txt lines the gateway needs.
const I2CLine = "dtparam=i2c_arm=on"

// W1Line is the 1-Wire overlay line for a GPIO.
func W1Line(pin int) string { return fmt.Sprintf("dtoverlay=w1-gpio,gpiopin=%d", pin) }

// EnsureConfigTxt returns config.txt with the ARM I2C bus on and the 1-Wire
// overlay on GPIO pin, for every board, and the lines it added. It is
// idempotent: what is already set (in global scope) is left alone, so a
// second run returns the text unchanged. A commented-out
// "#dtparam=i2c_arm=on" (Raspberry Pi OS ships one) is uncommented in place,
// as raspi-config does; anything else goes in a marked block at the end,
// under [all] when the file ends inside a conditional section.
func EnsureConfigTxt(text string, pin int) (string, []string) {
	i2cOn := false
	w1 := false
	forEachGlobal(text, func(_ int, l string) {
		if set, on := i2cSetting(l); set {
			i2cOn = on // later lines win
		}
		if p, ok := w1Pin(l); ok && p == pin {
			w1 = true
		}
	})
	var added []string
	lines := strings.Split(text, "\n")
	if !i2cOn {
		// Uncomment Raspberry Pi OS's "#dtparam=i2c_arm=on" if nothing later turns it off.
		global, last := true, -1
		for i, raw := range lines {
			l := strings.TrimSpace(raw)
			if strings.HasPrefix(l, "[") {
				global = strings.EqualFold(l, "[all]")
				continue
			}
			if !global {
				continue
			}
			if c, ok := strings.CutPrefix(l, "#"); ok {
				if set, on := i2cSetting(strings.TrimSpace(c)); set && on && last < 0 {
					last = i
				}
			} else if set, _ := i2cSetting(l); set {
				last = -2 // an active "off" line: override it at the end instead
			}
		}
		if last >= 0 {
			lines[last] = I2CLine
			text = strings.Join(lines, "\n")
			i2cOn = true
			added = append(added, I2CLine)
		}
	}
	var block []string
	if !i2cOn {
		block = append(block, I2CLine)
		added = append(added, I2CLine)
	}
	if !w1 {
		block = append(block, W1Line(pin))
		added = append(added, W1Line(pin))
	}
	if len(block) == 0 {
		return text, added
	}
	global := true
	for _, raw := range strings.Split(text, "\n") {
		if l := strings.TrimSpace(raw); strings.HasPrefix(l, "[") {
			global = strings.EqualFold(l, "[all]")
		}
	}
	var b strings.Builder
	b.WriteString(text)
	if text != "" && !strings.HasSuffix(text, "\n") {
		b.WriteString("\n")
	}
	b.WriteString("\n")
	if !global {
		b.WriteString("[all]\n")
	}
	b.WriteString("# Outpost gateway: I2C and 1-Wire buses for its sensors\n")
	for _, l := range block {
		b.WriteString(l + "\n")
	}
	return b.String(), added
}

// The kernel command line that runs firstrun.sh once, as Raspberry Pi Imager writes it.
const (
	FirstrunPath = "/boot/firstrun.sh"
	firstrunRun  = "systemd.run=" + FirstrunPath
	firstrunArgs = firstrunRun + " systemd.run_success_action=reboot systemd.unit=kernel-command-line.target"
)

// EnsureFirstrunCmdline returns cmdline.txt with firstrun.sh set to run at
// the next boot, exactly once: existing arguments that run /boot/firstrun.sh
// (Raspberry Pi Imager's, or ours from an earlier run) are replaced. A
// command line that already runs some other script, or boots another unit,
// is refused rather than silently changed.
func EnsureFirstrunCmdline(text string) (string, error) {
	first, rest, _ := strings.Cut(text, "\n")
	var out []string
	for _, a := range strings.Fields(first) {
		switch {
		case a == firstrunRun || a == "systemd.run_success_action=reboot" || a == "systemd.unit=kernel-command-line.target":
			continue
		case strings.HasPrefix(a, "systemd.run="):
			return "", fmt.Errorf("cmdline.txt already runs %s at boot; remove that first", strings.TrimPrefix(a, "systemd.run="))
		case strings.HasPrefix(a, "systemd.unit="):
			return "", fmt.Errorf("cmdline.txt boots %s; remove that first", strings.TrimPrefix(a, "systemd.unit="))
		case strings.HasPrefix(a, "systemd.run_success_action=") || strings.HasPrefix(a, "systemd.run_failure_action="):
			continue
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return "", fmt.Errorf("cmdline.txt is empty")
	}
	s := strings.Join(out, " ") + " " + firstrunArgs + "\n"
	if strings.TrimSpace(rest) != "" {
		s += rest
	}
	return s, nil
}
