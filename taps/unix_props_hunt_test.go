package taps

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// Bug hunt on the properties of a Unix domain socket Connection: what
// SetProperty does on its socket and what GetProperties reads back.

// unixInitiated listens on a socket file in a new temporary directory
// and initiates a Connection to it (length-prefix framed), stopped when t
// ends.
func unixInitiated(t *testing.T, sys *System) (c *Connection, path string) {
	t.Helper()
	path, ln := unixListenTemp(t, sys, "props.sock")
	t.Cleanup(func() { ln.Stop(); <-ln.Done() })
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(NewRemoteEndpoint().WithUnixPath(path)))
	pre.AddFramer(framers.NewLengthPrefix())
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	t.Cleanup(func() { c.Abort(); <-c.Done() })
	return c, path
}

// TestUnixSetPropertyConnCapacityProfileIsNotApplicable: a Unix socket
// has no DSCP: SetProperty of connCapacityProfile is a *PropertyError
// wrapping stacks.ErrNotApplicable (the contract for a property the live
// transport cannot take), the value is unchanged and the connection goes
// on. It was a bare EOPNOTSUPP from setsockopt(IP_TOS).
func TestUnixSetPropertyConnCapacityProfileIsNotApplicable(t *testing.T) {
	sys := newTestSystem(t)
	c, _ := unixInitiated(t, sys)
	err := c.SetProperty(ConnCapacityProfile, LowLatencyInteractive)
	var pe *PropertyError
	require.ErrorAs(t, err, &pe)
	require.ErrorIs(t, err, stacks.ErrNotApplicable)
	v, _ := c.GetProperties().Get(ConnCapacityProfile)
	require.Equal(t, CapacityDefault, v, "nothing changed")
	for _, p := range []Property{ConnTimeout, KeepAliveTimeout} {
		err := c.SetProperty(p, 3*time.Second)
		require.True(t, errors.Is(err, stacks.ErrNotApplicable), "%s: %v", p, err)
	}
	require.NoError(t, c.Send(testCtx(t), []byte("still open"), nil))
	require.Equal(t, StateEstablished, c.State())
}

// TestUnixSelectionPropertiesReadBackAsBooleans: on an established
// Connection a Selection Property reads back as whether the stack gives
// it (RFC 9622 §8: a Boolean), on a Unix socket as on the others. A Unix
// Connection had no Selected map (stacks.ByName does not know "unix"):
// reliability read back as the Preference Require, keepAlive as
// NoPreference.
func TestUnixSelectionPropertiesReadBackAsBooleans(t *testing.T) {
	sys := newTestSystem(t)
	c, _ := unixInitiated(t, sys)
	p := c.GetProperties()
	require.Equal(t, "unix", p.Stack)
	require.NotEmpty(t, p.Selected)
	for prop, want := range map[Property]bool{
		Reliability: true, PreserveOrder: true, CongestionControl: true,
		PreserveMsgBoundaries: true, // the framer
		KeepAlive:             false, Multistreaming: false, ZeroRTTMsg: false, PerMsgReliability: false,
	} {
		v, ok := p.Get(prop)
		require.True(t, ok, "%s", prop)
		require.Equal(t, want, v, "%s", prop)
	}
}

// TestUnixCloneIsANewConnectionToThePath: Clone of a Unix Connection it
// initiated is a new connection to the same socket path (RFC 9622 §7.4),
// in its group, which the Listener receives. It failed with a CloneError
// "no established stack to clone" (ReasonNotCloneable, ErrNotAllowed) on
// an established Connection: stacks.ByName does not know "unix".
func TestUnixCloneIsANewConnectionToThePath(t *testing.T) {
	sys := newTestSystem(t)
	path, ln := unixListenTemp(t, sys, "clone.sock")
	defer func() { ln.Stop(); <-ln.Done() }()
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(NewRemoteEndpoint().WithUnixPath(path)))
	pre.AddFramer(framers.NewLengthPrefix())
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	s1, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	defer func() { s1.Abort(); <-s1.Done() }()

	c2, err := c.Clone(testCtx(t))
	require.NoError(t, err)
	defer func() { c2.Abort(); <-c2.Done() }()
	require.Equal(t, "unix", c2.GetProperties().Stack)
	require.NoError(t, c2.Send(testCtx(t), []byte("from the clone"), nil))
	s2, err := ln.Accept(testCtx(t))
	require.NoError(t, err)
	defer func() { s2.Abort(); <-s2.Done() }()
	m, err := s2.Receive(testCtx(t))
	require.NoError(t, err)
	require.Equal(t, "from the clone", string(m.Data))
	group, err := c.GroupedConnections(testCtx(t))
	require.NoError(t, err)
	require.Len(t, group, 2)
}

// TestUnixPathWithAnIPIdentifierIsAnEndpointError: a Unix socket path is
// the whole endpoint: with a service or an interface (as with a host, an
// address or a port) the endpoint is invalid, and with a protocol other
// than unix it cannot be reached; each fails Initiate and Listen with an
// *EndpointError before any packet, and no socket file is made. A service
// or an interface was silently dropped (WithPort was refused), and a
// protocol left nothing to attempt.
func TestUnixPathWithAnIPIdentifierIsAnEndpointError(t *testing.T) {
	sys := newTestSystem(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "x.sock")
	remotes := map[string]*RemoteEndpoint{
		"service":   NewRemoteEndpoint().WithUnixPath(path).WithService("http"),
		"interface": NewRemoteEndpoint().WithUnixPath(path).WithInterface("lo"),
		"protocol":  NewRemoteEndpoint().WithUnixPath(path).WithProtocol("tcp"),
		"port":      NewRemoteEndpoint().WithUnixPath(path).WithPort(80),
	}
	for name, r := range remotes {
		_, err := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r)).Initiate(testCtx(t))
		var ee *EndpointError
		require.ErrorAs(t, err, &ee, "%s", name)
		require.ErrorIs(t, err, ErrInvalidEndpoint, "%s", name)
	}
	locals := map[string]*LocalEndpoint{
		"service":   NewLocalEndpoint().WithUnixPath(path).WithService("http"),
		"interface": NewLocalEndpoint().WithUnixPath(path).WithInterface("lo"),
	}
	for name, l := range locals {
		_, err := NewPreconnection(WithSystem(sys), WithLocalEndpoint(l)).Listen(testCtx(t))
		var ee *EndpointError
		require.ErrorAs(t, err, &ee, "%s", name)
		_, serr := os.Lstat(path)
		require.ErrorIs(t, serr, fs.ErrNotExist, "%s: no socket file", name)
	}
	// the unix protocol is the path's own
	ln, err := NewPreconnection(WithSystem(sys), WithLocalEndpoint(NewLocalEndpoint().WithUnixPath(path))).Listen(testCtx(t))
	require.NoError(t, err)
	defer func() { ln.Stop(); <-ln.Done() }()
	c, err := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(NewRemoteEndpoint().WithUnixPath(path).WithProtocol("unix"))).Initiate(testCtx(t))
	require.NoError(t, err)
	c.Abort()
	<-c.Done()
}
