package loadgen

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A payload is a valid protocol log batch with one reading:
//
//	{"v":1,"records":[{"seq":N,"kind":"reading","t":MS,"sensor":"txx…","value":21.D}]}
//
// padded to the requested size through the sensor name, so the hub decodes
// and stores every message and Mosquitto gets the same bytes.
const (
	payloadPrefix = `{"v":1,"records":[{"seq":`
	maxSensor     = 64 // protocol.MaxSensorNameLen
)

// MinPayload and MaxPayload bound the payload sizes Payload produces exactly
// for sequence numbers below 10⁹.
const (
	MinPayload = 100
	MaxPayload = 152
)

func init() {
	// The bounds above must hold for 1- and 9-digit sequence numbers.
	for _, seq := range []uint64{1, 999_999_999} {
		for _, n := range []int{MinPayload, MaxPayload} {
			if len(Payload(seq, n, 0)) != n {
				panic(fmt.Sprintf("loadgen: payload bounds wrong: seq %d size %d gives %d", seq, n, len(Payload(seq, n, 0))))
			}
		}
	}
}

// Payload returns the log batch for seq, size bytes long when size is within
// [MinPayload, MaxPayload] and seq < 10⁹ (otherwise as close as the format
// allows). tMS is
// the record's time (unix ms); 0 means now.
func Payload(seq uint64, size int, tMS int64) []byte {
	if tMS <= 0 {
		tMS = time.Now().UnixMilli()
	}
	b := make([]byte, 0, max(size, 128))
	b = append(b, payloadPrefix...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"kind":"reading","t":`...)
	b = strconv.AppendInt(b, tMS, 10)
	b = append(b, `,"sensor":"t`...)
	tail := `","value":21.` + string(rune('0'+seq%10))
	const end = `}]}`
	pad := size - len(b) - len(tail) - len(end)
	b = append(b, strings.Repeat("x", min(max(pad, 0), maxSensor-1))...)
	b = append(b, tail...)
	return append(b, end...)
}

// parseSeq extracts the sequence number of a Payload.
func parseSeq(p []byte) (uint64, bool) {
	if len(p) <= len(payloadPrefix) || string(p[:len(payloadPrefix)]) != payloadPrefix {
		return 0, false
	}
	var n uint64
	i := len(payloadPrefix)
	start := i
	for ; i < len(p) && p[i] >= '0' && p[i] <= '9'; i++ {
		n = n*10 + uint64(p[i]-'0')
	}
	if i == start || i-start > 19 || i >= len(p) || p[i] != ',' {
		return 0, false
	}
	return n, true
}
