package llm

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ParseDecision reads an evaluation's answer strictly: a JSON object with
// exactly the keys "accepted" (a boolean) and "reason" (a non-empty string),
// whether a provider carries it as a tool call's input (Anthropic) or as
// the message content (OpenAI-compatible). Anything else is an error, so
// that a garbled answer can never be taken for an acceptance. The errors
// name no provider: the caller wraps them as a malformed evaluation.
func ParseDecision(raw []byte) (accepted bool, reason string, err error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return false, "", errors.New("not a JSON object")
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"accepted", "reason"}) {
		return false, "", fmt.Errorf("want exactly the fields accepted and reason, got %s", strings.Join(keys, ", "))
	}
	var acc *bool
	if err := json.Unmarshal(fields["accepted"], &acc); err != nil || acc == nil {
		return false, "", errors.New("accepted is not a boolean")
	}
	var r *string
	if err := json.Unmarshal(fields["reason"], &r); err != nil || r == nil {
		return false, "", errors.New("reason is not a string")
	}
	reason = strings.TrimSpace(*r)
	if reason == "" {
		return false, "", errors.New("reason is empty")
	}
	return *acc, reason, nil
}
