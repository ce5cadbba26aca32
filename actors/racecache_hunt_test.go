package actors

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"testing/synctest"

	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// pathStack is a fake "unix" stack: a dial to a path in refuse fails, any
// other path succeeds (a net.Pipe).
type pathStack struct {
	*fakeStack
	refuse map[string]bool
}

func (s pathStack) Name() string { return "unix" }

func (s pathStack) Dial(ctx context.Context, remote netip.AddrPort, opts stacks.Options) (stacks.Transport, error) {
	if s.refuse[opts.Path] {
		return nil, errors.New("refused: " + opts.Path)
	}
	return s.fakeStack.Dial(ctx, remote, opts)
}

// Bug: the race cache keyed Unix domain socket remotes by their (empty)
// host and port and remembered a winner by stack and address only, so
// every Unix socket path shared one entry: a race to a path never raced
// before said FromCache, and the cached winner of a race over two paths
// promoted the first path, not the one that won.
func TestRaceCacheUnixPaths(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := NewSystem(Config{})
		defer shutdown(t, sys)
		st := pathStack{fakeStack: newFakeStack(nil), refuse: map[string]bool{"/run/a.sock": true}}
		cfg := func(paths ...string) *messages.ConnectionConfig {
			c := &messages.ConnectionConfig{Stacks: []stacks.Stack{st}}
			for _, p := range paths {
				c.Remotes = append(c.Remotes, &messages.Endpoint{Path: p})
			}
			return c
		}
		first := runRace(t, sys, cfg("/run/b.sock"))
		require.NoError(t, first.err)
		require.False(t, first.report.FromCache)

		other := runRace(t, sys, cfg("/run/c.sock"))
		require.NoError(t, other.err)
		require.False(t, other.report.FromCache, "another socket path was never raced")

		both := runRace(t, sys, cfg("/run/a.sock", "/run/b.sock"))
		require.NoError(t, both.err)
		require.Len(t, both.report.Attempts, 2, "a fails, b wins")
		again := runRace(t, sys, cfg("/run/a.sock", "/run/b.sock"))
		require.NoError(t, again.err)
		require.True(t, again.report.FromCache)
		require.Len(t, again.report.Attempts, 1, "the cached winner goes first: %+v", again.report.Attempts)
		require.Equal(t, "/run/b.sock", again.report.Attempts[0].Endpoint)
	})
}
