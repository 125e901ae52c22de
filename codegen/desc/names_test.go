package desc_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pollux-storage/pollux/codegen/desc"
)

// withNames is the smallest description with families and channels; each case of
// TestNamesErrors breaks one thing in it.
const withNames = `
enums:
  - name: request_type
    doc: A type.
    values:
      - {name: PUT, doc: "Put."}
      - {name: GET, doc: "Get."}
      - {name: PREPARE_TO_GET, doc: "Prepare."}
families:
  - {name: put, types: [PUT], doc: "Puts."}
  - {name: get, types: [GET, PREPARE_TO_GET], doc: "Gets."}
channels:
  - {name: pollux_thing_new, per_family: true, doc: "New things."}
  - {name: pollux_thing_changed, doc: "A thing changed."}
`

func TestNames(t *testing.T) {
	t.Parallel()
	s, err := desc.Load([]byte(withNames))
	require.NoError(t, err)
	require.Equal(t, []string{"pollux_thing_new_put", "pollux_thing_new_get"}, s.Channels[0].Names(s.Families))
	require.Equal(t, []string{"pollux_thing_changed"}, s.Channels[1].Names(s.Families))
	require.Equal(t, "ThingNew", s.Channels[0].GoName())
	require.Equal(t, "pollux_channel_thing_changed", s.Channels[1].SQLFunction())
	f, ok := s.FamilyOf("PREPARE_TO_GET")
	require.True(t, ok)
	require.Equal(t, "get", f.Name)

	var sigs []string
	for _, sig := range s.GeneratedSignatures() {
		require.Equal(t, desc.NamesFile, sig.File)
		sigs = append(sigs, sig.Name+"("+sig.IdentityArgs+") "+sig.Result)
	}
	require.Equal(t, []string{
		"pollux_family(p_type request_type) text",
		"pollux_families() text[]",
		"pollux_channel_thing_new(p_type request_type) text",
		"pollux_channel_thing_changed() text",
	}, sigs)
}

func TestNamesErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		old, new string // replaced once in withNames
		want     string
	}{
		{"type in no family", "types: [GET, PREPARE_TO_GET]", "types: [GET]", "families: request_type PREPARE_TO_GET is in no family"},
		{"type in two families", "types: [PUT]", "types: [PUT, GET]", `families[1].types[0] "GET": already in families[0]`},
		{"unknown type", "types: [PUT]", "types: [PUT, POST]", `families[0].types[1] "POST": not a value of request_type`},
		{"family of two words", "{name: put,", "{name: put_it,", `families[0] "put_it": name is not one lowercase word`},
		{"duplicate family", "{name: get,", "{name: put,", `families[1] "put": name is already used by families[0]`},
		{"family without doc", `, doc: "Puts."}`, "}", `families[0] "put": doc is empty`},
		{"no request_type", "  - name: request_type\n", "  - name: request_kind\n", "families: the enum request_type they partition is not declared"},
		{"channel prefix", "{name: pollux_thing_changed,", "{name: thing_changed,", `channels[1] "thing_changed": name is not pollux_ then lowercase snake_case`},
		{"channel clash", "{name: pollux_thing_changed,", "{name: pollux_thing_new_put,", "channel pollux_thing_new_put is already used by channels[0]"},
		{"channel too long", "{name: pollux_thing_new,", "{name: pollux_" + strings.Repeat("x", 55) + ",", "is longer than 63 bytes"},
		{"channel without doc", `, doc: "A thing changed."}`, "}", `channels[1] "pollux_thing_changed": doc is empty`},
		{"unknown key", "per_family: true,", "per_family: true, payload: id,", "field payload not found"},
		{"function clash", "channels:", "functions:\n  - {name: pollux_family, file: x.sql, doc: D., returns: {type: text}}\nchannels:", `functions "pollux_family": a described function has the name of a generated one`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Contains(t, withNames, tt.old)
			_, err := desc.Load([]byte(strings.Replace(withNames, tt.old, tt.new, 1)))
			require.ErrorContains(t, err, tt.want)
		})
	}
}
