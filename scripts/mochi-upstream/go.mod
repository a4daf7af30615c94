// A module of its own, so that it builds mochi as published, without the
// replace directive of the repository's go.mod (third_party/mochi).
module github.com/outpost-iot/outpost/scripts/mochi-upstream

go 1.24

require github.com/mochi-mqtt/server/v2 v2.7.9

require (
	github.com/gorilla/websocket v1.5.0 // indirect
	github.com/rs/xid v1.4.0 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
