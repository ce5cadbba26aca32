package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRenderReestablishment: a connection whose transport was replaced
// (its state records: Ready, back to Establishing, then Reestablished)
// is one lane that shows the re-establishment, and its Established
// segments after it.
func TestRenderReestablishment(t *testing.T) {
	in := `{"time_unix_nano":"5","kind":"state","connection_id":"1","group_id":"1","from_state":"Establishing","to_state":"Established","event":"Ready"}
{"time_unix_nano":"7","kind":"state","connection_id":"1","group_id":"1","from_state":"Established","to_state":"Establishing"}
{"time_unix_nano":"8","kind":"group","connection_id":"1","group_id":"1","event":"MemberReestablishing"}
{"time_unix_nano":"9","kind":"state","connection_id":"1","group_id":"1","from_state":"Establishing","to_state":"Established","event":"Reestablished"}
{"time_unix_nano":"9","kind":"group","connection_id":"1","group_id":"1","event":"MemberReestablished"}
{"time_unix_nano":"12","kind":"state","connection_id":"1","group_id":"1","from_state":"Established","to_state":"Closed","event":"Closed"}
`
	var warn strings.Builder
	recs, err := ReadTrace(strings.NewReader(in), &warn)
	require.NoError(t, err)
	require.Empty(t, warn.String())
	require.Len(t, recs, 6)
	svg := Render(recs)
	_, conns := checkSVG(t, svg)
	require.Equal(t, 1, conns)
	s := string(svg)
	require.Contains(t, s, "Established (Ready)")
	require.Contains(t, s, "Established (Reestablished)")
	require.Equal(t, 4, strings.Count(s, `<rect class="state"`), "Establishing, Established, Establishing, Established")
}
