package taps

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// localNamesResolver resolves good.test to 127.0.0.1 and fails every
// other name as a DNS "no such host" does.
func localNamesResolver() PreconnectionOption {
	return WithResolver(func(_ context.Context, network, host string) ([]netip.Addr, error) {
		if host == "good.test" && network == "ip4" {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	})
}

// TestLocalNameThatFailsIsPrunedAmongOthers: a local endpoint given by a
// host name that does not resolve is pruned as a candidate that failed
// (RFC 9623 §4.1), as a remote one is: the establishment goes on over the
// other local endpoints. Should every attempt fail, the EstablishmentError
// names the pruned local endpoint besides the attempts.
func TestLocalNameThatFailsIsPrunedAmongOthers(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	for _, other := range []*LocalEndpoint{NewLocalEndpoint().WithIPAddress("127.0.0.1"), NewLocalEndpoint().WithHostName("good.test")} {
		pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), localNamesResolver(),
			WithLocalEndpoint(NewLocalEndpoint().WithHostName("bad.test"), other),
			WithRemoteEndpoint(loopbackRemote(listenerAddr(t, ln))))
		c, err := pre.Initiate(testCtx(t))
		require.NoError(t, err, "the other local endpoint is left")
		s, err := ln.Accept(testCtx(t))
		require.NoError(t, err)
		c.Abort()
		s.Abort()
		<-c.Done()
		<-s.Done()
	}
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), localNamesResolver(),
		WithLocalEndpoint(NewLocalEndpoint().WithHostName("bad.test"), NewLocalEndpoint().WithIPAddress("127.0.0.1")),
		WithRemoteEndpoint(refusedRemote(t)))
	_, err := pre.Initiate(testCtx(t))
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, ReasonEstablishmentFailed, ee.Reason, "%v", err)
	require.NotEmpty(t, ee.Attempts, "the other local endpoint was attempted")
	var re *stacks.ResolveError
	require.ErrorAs(t, err, &re, "the pruned local endpoint is named: %v", err)
	require.Equal(t, "bad.test", re.Host)
	require.ErrorContains(t, err, "local endpoint")
	ln.Stop()
	<-ln.Done()
}

// TestLoneLocalNameThatFailsIsAnEstablishmentError: a lone local endpoint
// given by a host name that does not resolve leaves nothing to bind to:
// the Initiate fails before any packet with an EstablishmentError of
// ReasonResolutionFailed, no attempt, that names the local endpoint and
// unwraps to the *stacks.ResolveError and the *net.DNSError.
func TestLoneLocalNameThatFailsIsAnEstablishmentError(t *testing.T) {
	sys := newTestSystem(t)
	pre := NewPreconnection(WithSystem(sys), WithProtocols("tcp"), localNamesResolver(),
		WithLocalEndpoint(NewLocalEndpoint().WithHostName("bad.test")),
		WithRemoteEndpoint(refusedRemote(t)))
	_, err := pre.Initiate(testCtx(t))
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, ReasonResolutionFailed, ee.Reason, "%v", err)
	require.Empty(t, ee.Attempts, "nothing was attempted")
	var re *stacks.ResolveError
	require.ErrorAs(t, err, &re)
	require.Equal(t, "bad.test", re.Host)
	var de *net.DNSError
	require.ErrorAs(t, err, &de)
	require.ErrorContains(t, err, "local endpoint")
}
