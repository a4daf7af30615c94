// Package protocol owns Outpost's MQTT topic tree, payload types and their
// validation. Both the hub and the gateway import it; it uses the standard
// library only. docs/protocol.md is the prose version of this package.
package protocol
