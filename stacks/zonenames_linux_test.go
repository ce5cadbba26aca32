package stacks

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestZoneNamesCache: an interface's name is looked up once per
// scopeNameTTL (not at each ICMP error), again once it is older, and an
// index no interface has is named in decimal.
func TestZoneNamesCache(t *testing.T) {
	lookups := 0
	names := map[int]string{2: "eth0"}
	z := zoneNames{lookup: func(index int) (string, error) {
		lookups++
		if n, ok := names[index]; ok {
			return n, nil
		}
		return "", errors.New("no such interface")
	}}
	t0 := time.Unix(1000, 0)
	require.Equal(t, "eth0", z.name(2, t0))
	require.Equal(t, "eth0", z.name(2, t0.Add(scopeNameTTL/2)))
	require.Equal(t, 1, lookups, "the second name came from the cache")
	names[2] = "renamed"
	require.Equal(t, "renamed", z.name(2, t0.Add(scopeNameTTL)), "looked up again once older than the TTL")
	require.Equal(t, 2, lookups)
	require.Equal(t, "7", z.name(7, t0), "no interface: the index")
}
