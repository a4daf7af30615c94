package protocol

import "strings"

// Claim topics: a gateway that holds only a claim token announces itself on
// Root/claim/{clientid}/req and receives the answer on
// Root/claim/{clientid}/resp (docs/protocol.md, "Claiming").
const (
	SufClaimReq  = "req"
	SufClaimResp = "resp"
)

// ClaimTopic returns Root/claim/{id}/{suffix}.
func ClaimTopic(id, suffix string) string { return Root + "/claim/" + id + "/" + suffix }

// ParseClaimTopic splits Root/claim/{id}/{suffix}; ok is false for any other topic.
func ParseClaimTopic(topic string) (id, suffix string, ok bool) {
	rest, found := strings.CutPrefix(topic, Root+"/claim/")
	if !found {
		return "", "", false
	}
	id, suffix, found = strings.Cut(rest, "/")
	if !found || id == "" || (suffix != SufClaimReq && suffix != SufClaimResp) {
		return "", "", false
	}
	return id, suffix, true
}

// ClaimRequest is a gateway's announcement on Root/claim/{id}/req; the answer
// goes to the request's v5 ResponseTopic (Root/claim/{id}/resp) with its
// CorrelationData.
type ClaimRequest struct {
	V        int    `json:"v"`
	Device   string `json:"device"`          // must equal the MQTT client id
	Firmware string `json:"fw,omitempty"`    // gateway version
	Board    string `json:"board,omitempty"` // e.g. "Raspberry Pi 4 Model B Rev 1.5"
	Arch     string `json:"arch,omitempty"`  // e.g. "linux/arm64", "linux/arm/v6"
}

// Claim answer states.
const (
	ClaimAccepted = "accepted" // Token holds the device's channel token
	ClaimPending  = "pending"  // an operator has to accept the device; announce again later
	ClaimRejected = "rejected" // an operator rejected the device, or the claim cannot be used
)

// ClaimResponse answers a ClaimRequest.
type ClaimResponse struct {
	V       int    `json:"v"`
	Status  string `json:"status"`
	Device  string `json:"device"`
	Token   string `json:"token,omitempty"` // with accepted: a channel token, profile gateway
	Expires int64  `json:"exp,omitempty"`   // the token's expiry, unix seconds
	Retry   int    `json:"retry_s,omitempty"`
	Reason  string `json:"reason,omitempty"` // with rejected (and pending): why, for the device's log
}

// DecodeClaimRequest decodes and validates a claim announcement.
func DecodeClaimRequest(b []byte) (ClaimRequest, error) {
	var r ClaimRequest
	if err := decode(b, &r, "claim request"); err != nil {
		return ClaimRequest{}, err
	}
	if err := checkVersion(r.V, "claim request"); err != nil {
		return ClaimRequest{}, err
	}
	if err := ValidateDeviceID(r.Device); err != nil {
		return ClaimRequest{}, invalid("claim request: %v", err)
	}
	for _, f := range []struct{ name, v string }{{"fw", r.Firmware}, {"board", r.Board}, {"arch", r.Arch}} {
		if err := checkText("claim request: "+f.name, f.v, 128); err != nil {
			return ClaimRequest{}, err
		}
	}
	return r, nil
}

// DecodeClaimResponse decodes and validates a claim answer.
func DecodeClaimResponse(b []byte) (ClaimResponse, error) {
	var r ClaimResponse
	if err := decode(b, &r, "claim response"); err != nil {
		return ClaimResponse{}, err
	}
	if err := checkVersion(r.V, "claim response"); err != nil {
		return ClaimResponse{}, err
	}
	switch r.Status {
	case ClaimAccepted:
		if strings.Count(r.Token, ".") != 2 || r.Expires <= 0 {
			return ClaimResponse{}, invalid("claim response: accepted without a token and its expiry")
		}
		if err := ValidateDeviceID(r.Device); err != nil {
			return ClaimResponse{}, invalid("claim response: %v", err)
		}
	case ClaimPending, ClaimRejected:
		if r.Token != "" {
			return ClaimResponse{}, invalid("claim response: %s with a token", r.Status)
		}
	default:
		return ClaimResponse{}, invalid("claim response: status %q (want accepted, pending or rejected)", r.Status)
	}
	if r.Retry < 0 || r.Retry > 24*3600 {
		return ClaimResponse{}, invalid("claim response: retry_s %d out of range", r.Retry)
	}
	if err := checkText("claim response: reason", r.Reason, MaxTextLen); err != nil {
		return ClaimResponse{}, err
	}
	return r, nil
}

// ClaimGrants are the only filters a claim session holds: publish on its own
// request topic, subscribe to its own response topic.
func ClaimGrants(clientID string) (pub, sub []string) {
	return []string{ClaimTopic(clientID, SufClaimReq)}, []string{ClaimTopic(clientID, SufClaimResp)}
}
