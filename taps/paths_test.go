package taps

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// Tests of the path Selection Properties (interface, pvd,
// useTemporaryLocalAddress), of several local endpoints, and of multipath,
// multipathPolicy and advertisesAltaddr, on real sockets over loopback.

// initiatePath initiates a framed connection to 127.0.0.1 (or host) at port.
func initiatePath(t *testing.T, sys *System, host string, port uint16, tp *TransportProperties, opts ...PreconnectionOption) (*Connection, error) {
	t.Helper()
	if tp == nil {
		tp = NewTransportProperties()
	}
	opts = append([]PreconnectionOption{WithSystem(sys), WithTransportProperties(tp), WithAttemptDelay(20 * time.Millisecond),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress(host).WithPort(port))}, opts...)
	pre := NewPreconnection(opts...)
	pre.AddFramer(framers.NewLengthPrefix())
	return pre.Initiate(testCtx(t))
}

// echoLoopback listens on 127.0.0.1 with a framer and echoes.
func echoLoopback(t *testing.T, sys *System) uint16 {
	t.Helper()
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	echoServer(t, ln)
	ap, ok := ln.LocalEndpoints()[0].Addr()
	require.True(t, ok)
	return ap.Port()
}

func withInterface(t *testing.T, name string, pref Preference) *TransportProperties {
	t.Helper()
	tp := NewTransportProperties()
	require.NoError(t, tp.SetInterface(name, pref))
	return tp
}

// requireNoPath checks err is an EstablishmentError with ReasonNoCandidates
// carrying a *PathError for property, made before any attempt.
func requireNoPath(t *testing.T, err error, property Property) *PathError {
	t.Helper()
	require.Error(t, err)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, ReasonNoCandidates, ee.Reason, err.Error())
	require.Empty(t, ee.Attempts, "no attempt may be made")
	var pe *PathError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, property, pe.Property)
	require.ErrorIs(t, err, ErrNoNetworkPath)
	return pe
}

func TestInterfaceRequireLoopback(t *testing.T) {
	sys := newTestSystem(t)
	port := echoLoopback(t, sys)
	for _, name := range []string{"lo", "loopback", "Loopback"} {
		c, err := initiatePath(t, sys, "127.0.0.1", port, withInterface(t, name, Require))
		require.NoError(t, err, name)
		roundTrip(t, c, "bound to lo")
		rep := c.EstablishmentReport()
		require.NotNil(t, rep)
		require.Len(t, rep.Attempts, 1)
		require.Equal(t, "lo", rep.Attempts[0].Path, "the attempt was bound to lo")
		require.NoError(t, c.Close())
		<-c.Done()
	}
}

func TestInterfaceProhibitLoopback(t *testing.T) {
	sys := newTestSystem(t)
	port := echoLoopback(t, sys)
	for _, name := range []string{"lo", "loopback"} {
		_, err := initiatePath(t, sys, "127.0.0.1", port, withInterface(t, name, Prohibit))
		pe := requireNoPath(t, err, Interface)
		require.Equal(t, "lo", pe.Name)
		require.Contains(t, err.Error(), "Prohibited")
	}
	// Avoid is only an order: with no other path, lo is still used
	c, err := initiatePath(t, sys, "127.0.0.1", port, withInterface(t, "lo", Avoid))
	require.NoError(t, err)
	roundTrip(t, c, "avoided, not prohibited")
	c.Abort()
	<-c.Done()
	// Prohibiting another interface changes nothing for loopback
	c, err = initiatePath(t, sys, "127.0.0.1", port, withInterface(t, "gotaps-none0", Prohibit))
	require.NoError(t, err)
	c.Abort()
	<-c.Done()
}

func TestInterfaceRequireMissingFailsBeforeAnyPacket(t *testing.T) {
	var mu sync.Mutex
	var records []*TraceRecord
	tsys := newTestSystem(t, WithTracer(func(r *TraceRecord) {
		mu.Lock()
		records = append(records, r)
		mu.Unlock()
	}))
	_, err := initiatePath(t, tsys, "127.0.0.1", 9, withInterface(t, "gotaps-nope0", Require))
	pe := requireNoPath(t, err, Interface)
	require.Equal(t, "gotaps-nope0", pe.Name)
	require.Contains(t, err.Error(), "no interface that is up matches")
	mu.Lock()
	for _, r := range records {
		require.NotEqual(t, "candidate", r.Kind, "no attempt may start")
	}
	mu.Unlock()
	// Listen too
	_, err = NewPreconnection(WithSystem(tsys), WithTransportProperties(withInterface(t, "gotaps-nope0", Require)),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1"))).Listen(testCtx(t))
	requireNoPath(t, err, Interface)
}

func TestPvD(t *testing.T) {
	sys := newTestSystem(t)
	port := echoLoopback(t, sys)
	tp := NewTransportProperties()
	require.NoError(t, tp.SetPvD("pvd.example.org", Require))
	_, err := initiatePath(t, sys, "127.0.0.1", port, tp)
	pe := requireNoPath(t, err, PvD)
	require.Equal(t, "pvd.example.org", pe.Name)
	require.ErrorIs(t, err, ErrPvDUnsupported)
	require.Contains(t, err.Error(), "no PvD API")
	for _, pref := range []Preference{Prefer, Avoid, Prohibit} {
		tp := NewTransportProperties()
		require.NoError(t, tp.SetPvD("pvd.example.org", pref))
		c, err := initiatePath(t, sys, "127.0.0.1", port, tp)
		require.NoError(t, err, "pvd %v changes nothing", pref)
		c.Abort()
		<-c.Done()
	}
}

func TestLocalEndpointInterface(t *testing.T) {
	sys := newTestSystem(t)
	port := echoLoopback(t, sys)
	c, err := initiatePath(t, sys, "127.0.0.1", port, nil, WithLocalEndpoint(NewLocalEndpoint().WithInterface("lo")))
	require.NoError(t, err)
	roundTrip(t, c, "from lo")
	rep := c.EstablishmentReport()
	require.Len(t, rep.Attempts, 1)
	require.Equal(t, "lo", rep.Attempts[0].Path)
	c.Abort()
	<-c.Done()

	_, err = initiatePath(t, sys, "127.0.0.1", port, nil, WithLocalEndpoint(NewLocalEndpoint().WithInterface("gotaps-nope0")))
	require.ErrorIs(t, err, ErrUnknownInterface)
	require.ErrorIs(t, err, ErrInvalidEndpoint)
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, ReasonInvalidConfiguration, ee.Reason)
	require.Empty(t, ee.Attempts)
	require.Contains(t, err.Error(), `no such network interface "gotaps-nope0"`)

	// the interface a local endpoint names must be allowed by the property
	_, err = initiatePath(t, sys, "127.0.0.1", port, withInterface(t, "lo", Prohibit),
		WithLocalEndpoint(NewLocalEndpoint().WithInterface("lo")))
	requireNoPath(t, err, Interface)
}

// TestInitiateRacesEveryLocalEndpoint gives two local endpoints: the first
// address is not on this host (bind fails), the second is: both are
// candidates, and the second wins.
func TestInitiateRacesEveryLocalEndpoint(t *testing.T) {
	sys := newTestSystem(t)
	port := echoLoopback(t, sys)
	c, err := initiatePath(t, sys, "127.0.0.1", port, nil, WithLocalEndpoint(
		NewLocalEndpoint().WithIPAddress("198.51.100.123"),
		NewLocalEndpoint().WithIPAddress("127.0.0.7").WithInterface("lo"),
	))
	require.NoError(t, err)
	roundTrip(t, c, "second local endpoint")
	rep := c.EstablishmentReport()
	require.Len(t, rep.Attempts, 2)
	require.NotEmpty(t, rep.Attempts[0].Err, "198.51.100.123 is not an address of this host")
	require.Equal(t, "", rep.Attempts[0].Path)
	require.True(t, rep.Attempts[1].Won)
	require.Equal(t, "lo", rep.Attempts[1].Path)
	local, ok := c.GetProperties().Local.Addr()
	require.True(t, ok)
	require.Equal(t, "127.0.0.7", local.Addr().String())
	c.Abort()
	<-c.Done()

	// a local endpoint of the other family only: nothing to attempt
	_, err = initiatePath(t, sys, "127.0.0.1", port, nil, WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("::1")))
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Empty(t, ee.Attempts)
	require.Contains(t, err.Error(), "no address of the family")
}

// TestListenOnEveryLocalEndpoint listens on 127.0.0.1 and ::1 (one
// socket each, the same ephemeral port) and connects to both.
func TestListenOnEveryLocalEndpoint(t *testing.T) {
	if !hasIPv6Loopback() {
		t.Skip("no IPv6 loopback")
	}
	sys := newTestSystem(t)
	pre := NewPreconnection(WithSystem(sys), WithLocalEndpoint(
		NewLocalEndpoint().WithIPAddress("127.0.0.1"),
		NewLocalEndpoint().WithIPAddress("::1"),
	))
	pre.AddFramer(framers.NewLengthPrefix())
	ln, err := pre.Listen(testCtx(t))
	require.NoError(t, err)
	echoServer(t, ln)
	var port uint16
	hosts := map[string]bool{}
	for _, le := range ln.LocalEndpoints() {
		ap, ok := le.Addr()
		require.True(t, ok)
		hosts[ap.Addr().String()] = true
		require.Empty(t, le.Interface(), "not bound to an interface")
		if port == 0 {
			port = ap.Port()
		}
		require.Equal(t, port, ap.Port(), "one ephemeral port for every local endpoint")
	}
	require.Equal(t, map[string]bool{"127.0.0.1": true, "::1": true}, hosts)
	for _, host := range []string{"127.0.0.1", "::1"} {
		c, err := initiatePath(t, sys, host, port, nil)
		require.NoError(t, err, host)
		roundTrip(t, c, "to "+host)
		c.Abort()
		<-c.Done()
	}
	ln.Stop()
	<-ln.Done()

	// overlapping endpoints cannot share a port: each gets its own
	pre = NewPreconnection(WithSystem(sys), WithLocalEndpoint(
		NewLocalEndpoint().WithIPAddress("0.0.0.0"),
		NewLocalEndpoint().WithIPAddress("127.0.0.1"),
	))
	ln, err = pre.Listen(testCtx(t))
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(ln.LocalEndpoints()), 2)
	ln.Stop()
	<-ln.Done()
}

func TestListenInterface(t *testing.T) {
	sys := newTestSystem(t)
	listen := func(tp *TransportProperties, l *LocalEndpoint) (*Listener, error) {
		if tp == nil {
			tp = NewTransportProperties()
		}
		pre := NewPreconnection(WithSystem(sys), WithTransportProperties(tp), WithLocalEndpoint(l))
		pre.AddFramer(framers.NewLengthPrefix())
		return pre.Listen(testCtx(t))
	}
	for _, tc := range []struct {
		name string
		tp   *TransportProperties
		l    *LocalEndpoint
	}{
		{"local endpoint on lo", nil, NewLocalEndpoint().WithIPAddress("127.0.0.1").WithInterface("lo")},
		{"Require lo", withInterface(t, "lo", Require), NewLocalEndpoint().WithIPAddress("127.0.0.1")},
	} {
		ln, err := listen(tc.tp, tc.l)
		require.NoError(t, err, tc.name)
		echoServer(t, ln)
		require.Len(t, ln.LocalEndpoints(), 1, tc.name)
		require.Equal(t, "lo", ln.LocalEndpoints()[0].Interface(), "%s: the socket's interface is reported", tc.name)
		ap, _ := ln.LocalEndpoints()[0].Addr()
		c, err := initiatePath(t, sys, "127.0.0.1", ap.Port(), nil)
		require.NoError(t, err, tc.name)
		roundTrip(t, c, tc.name)
		c.Abort()
		<-c.Done()
		ln.Stop()
		<-ln.Done()
	}
	_, err := listen(nil, NewLocalEndpoint().WithIPAddress("127.0.0.1").WithInterface("gotaps-nope0"))
	require.ErrorIs(t, err, ErrUnknownInterface)

	// Prohibit lo: 127.0.0.1 is listened on through the other interfaces
	// only, so a connection through lo finds no socket (refused)
	ln, err := listen(withInterface(t, "lo", Prohibit), NewLocalEndpoint().WithIPAddress("127.0.0.1"))
	if err != nil {
		requireNoPath(t, err, Interface) // a host with nothing but lo
		return
	}
	for _, le := range ln.LocalEndpoints() {
		require.NotEmpty(t, le.Interface(), "each socket is bound to one of the other interfaces")
		require.NotEqual(t, "lo", le.Interface())
	}
	ap, _ := ln.LocalEndpoints()[0].Addr()
	_, err = initiatePath(t, sys, "127.0.0.1", ap.Port(), nil)
	require.Error(t, err, "a listener not bound to lo cannot be reached through lo")
	t.Logf("listening on %v, none on lo: %v", ln.LocalEndpoints(), err)
	ln.Stop()
	<-ln.Done()
}

func hasIPv6Loopback() bool {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func mptcpEnabled() bool {
	b, err := os.ReadFile("/proc/sys/net/mptcp/enabled")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// TestMultipathSelectsMPTCP: multipath Active and Passive use MPTCP for
// TCP, Disabled never does, and the property reads back what the
// connection really runs (on both ends).
func TestMultipathSelectsMPTCP(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix()) // Listen default: Passive
	ap, _ := ln.LocalEndpoints()[0].Addr()
	accepted := make(chan *Connection, 4)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for {
			s, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			select {
			case accepted <- s:
			case <-ctx.Done(): // the test ended with the buffer full
				s.Abort()
				return
			}
		}
	}()
	mp := mptcpEnabled()
	for _, tc := range []struct {
		mode MultipathMode
		want bool
	}{
		{MultipathActive, mp},
		{MultipathPassive, mp},
		{MultipathDisabled, false},
	} {
		tp := NewTransportProperties()
		require.NoError(t, tp.Set(Multipath, tc.mode))
		c, err := initiatePath(t, sys, "127.0.0.1", ap.Port(), tp)
		require.NoError(t, err, tc.mode)
		props := c.GetProperties()
		require.Equal(t, tc.want, props.Socket.MPTCP, "multipath %v: MultipathTCP()", tc.mode)
		got, _ := props.Get(Multipath)
		wantMode := MultipathDisabled
		if tc.want {
			wantMode = tc.mode
		}
		require.Equal(t, wantMode, got, "multipath %v reads back what the socket runs", tc.mode)
		s := <-accepted
		sp := s.GetProperties()
		require.Equal(t, tc.want, sp.Socket.MPTCP, "server side")
		got, _ = sp.Get(Multipath)
		if tc.want {
			require.Equal(t, MultipathPassive, got)
		} else {
			require.Equal(t, MultipathDisabled, got)
		}
		got, _ = props.Get(AdvertisesAltaddr)
		require.Equal(t, false, got)
		c.Abort()
		<-c.Done()
		s.Abort()
	}
	// a listener with multipath Disabled never runs MPTCP, even for an
	// MPTCP client
	tp := NewTransportProperties()
	require.NoError(t, tp.Set(Multipath, MultipathDisabled))
	pre := NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1")))
	ln2, err := pre.Listen(testCtx(t))
	require.NoError(t, err)
	ap2, _ := ln2.LocalEndpoints()[0].Addr()
	active := NewTransportProperties()
	require.NoError(t, active.Set(Multipath, MultipathActive))
	c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(active),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap2.Port()))).Initiate(testCtx(t))
	require.NoError(t, err)
	require.False(t, c.GetProperties().Socket.MPTCP, "the listener refused MPTCP: plain TCP")
	got, _ := c.GetProperties().Get(Multipath)
	require.Equal(t, MultipathDisabled, got)
	s, err := ln2.Accept(testCtx(t))
	require.NoError(t, err)
	require.False(t, s.GetProperties().Socket.MPTCP)
	c.Abort()
	s.Abort()
	<-c.Done()
	ln2.Stop()
	<-ln2.Done()
}

// TestMultipathActiveRanksMultipathStacks: with security, multipath
// Active puts TLS (over MPTCP) before QUIC.
func TestMultipathActiveRanksMultipathStacks(t *testing.T) {
	tp := NewTransportProperties()
	require.NoError(t, tp.Set(Multipath, MultipathActive))
	sel, err := selectStacks(tp, roleInitiate, NewSecurityParameters(), false, nil)
	require.NoError(t, err)
	require.Equal(t, "tls", sel[0].Name())
	sel, err = selectStacks(NewTransportProperties(), roleInitiate, NewSecurityParameters(), false, nil)
	require.NoError(t, err)
	require.Equal(t, "quic", sel[0].Name(), "without multipath, multistreaming puts QUIC first")
}

func TestMultipathPolicyUnsatisfiable(t *testing.T) {
	sys := newTestSystem(t)
	port := echoLoopback(t, sys)
	for _, tc := range []struct {
		mode   MultipathMode
		policy MultipathPolicyMode
		fails  bool
	}{
		{MultipathActive, Aggregate, true},
		{MultipathPassive, Interactive, true},
		{MultipathActive, Handover, false},
		{MultipathDisabled, Aggregate, false},
	} {
		tp := NewTransportProperties()
		require.NoError(t, tp.Set(Multipath, tc.mode))
		require.NoError(t, tp.Set(MultipathPolicy, tc.policy))
		c, err := initiatePath(t, sys, "127.0.0.1", port, tp)
		if !tc.fails {
			require.NoError(t, err, "%v %v", tc.mode, tc.policy)
			c.Abort()
			<-c.Done()
			continue
		}
		require.ErrorIs(t, err, ErrPropertyUnsatisfiable, "%v %v", tc.mode, tc.policy)
		var pe *PropertyError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, MultipathPolicy, pe.Property)
		var ee *EstablishmentError
		require.ErrorAs(t, err, &ee)
		require.Equal(t, ReasonInvalidConfiguration, ee.Reason)
		require.Empty(t, ee.Attempts)
		require.Contains(t, err.Error(), "per network namespace")
	}
	// on an open connection too
	active := NewTransportProperties()
	require.NoError(t, active.Set(Multipath, MultipathActive))
	c, err := initiatePath(t, sys, "127.0.0.1", port, active)
	require.NoError(t, err)
	err = c.SetProperty(MultipathPolicy, Aggregate)
	require.ErrorIs(t, err, ErrPropertyUnsatisfiable)
	require.NoError(t, c.SetProperty(MultipathPolicy, Handover))
	c.Abort()
	<-c.Done()
	c, err = initiatePath(t, sys, "127.0.0.1", port, nil) // multipath Disabled
	require.NoError(t, err)
	require.NoError(t, c.SetProperty(MultipathPolicy, Aggregate), "no multipath: the policy does not matter")
	c.Abort()
	<-c.Done()
	// Listen: the default multipath is Passive
	tp := NewTransportProperties()
	require.NoError(t, tp.Set(MultipathPolicy, Aggregate))
	_, err = NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1"))).Listen(testCtx(t))
	require.ErrorIs(t, err, ErrPropertyUnsatisfiable)
	// no multipath-capable stack selected: the policy does not apply
	tp = NewTransportProperties()
	require.NoError(t, tp.Set(Multipath, MultipathActive))
	require.NoError(t, tp.Set(MultipathPolicy, Aggregate))
	pre := NewPreconnection(WithSystem(sys), WithTransportProperties(tp), WithProtocols("udp"),
		WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(port)))
	_, err = pre.Initiate(testCtx(t))
	require.False(t, errors.Is(err, ErrPropertyUnsatisfiable), "got %v", err)
}

func TestAdvertisesAltaddrUnsatisfiable(t *testing.T) {
	sys := newTestSystem(t)
	port := echoLoopback(t, sys)
	tp := NewTransportProperties()
	require.NoError(t, tp.Set(AdvertisesAltaddr, true))
	_, err := initiatePath(t, sys, "127.0.0.1", port, tp)
	require.ErrorIs(t, err, ErrPropertyUnsatisfiable)
	var pe *PropertyError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, AdvertisesAltaddr, pe.Property)
	require.Contains(t, err.Error(), "ADD_ADDR")
	_, err = NewPreconnection(WithSystem(sys), WithTransportProperties(tp),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1"))).Listen(testCtx(t))
	require.ErrorIs(t, err, ErrPropertyUnsatisfiable)
}

func TestTemporaryAddressRequire(t *testing.T) {
	sys := newTestSystem(t)
	port := echoLoopback(t, sys)
	tp := NewTransportProperties()
	require.NoError(t, tp.Require(UseTemporaryLocalAddress))
	_, err := initiatePath(t, sys, "127.0.0.1", port, tp)
	pe := requireNoPath(t, err, UseTemporaryLocalAddress)
	require.Contains(t, pe.Reason, "IPv4 has no temporary addresses")

	if !hasIPv6Loopback() {
		t.Skip("no IPv6 loopback")
	}
	pre := NewPreconnection(WithSystem(sys), WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("::1")))
	pre.AddFramer(framers.NewLengthPrefix())
	ln, err := pre.Listen(testCtx(t))
	require.NoError(t, err)
	echoServer(t, ln)
	ap, _ := ln.LocalEndpoints()[0].Addr()
	_, err = initiatePath(t, sys, "::1", ap.Port(), tp)
	pe = requireNoPath(t, err, UseTemporaryLocalAddress)
	require.Contains(t, pe.Reason, "::1", "::1 is not a temporary address")

	tp = NewTransportProperties()
	require.NoError(t, tp.Prohibit(UseTemporaryLocalAddress))
	c, err := initiatePath(t, sys, "::1", ap.Port(), tp)
	require.NoError(t, err)
	roundTrip(t, c, "public source")
	local, _ := c.GetProperties().Local.Addr()
	require.Equal(t, netip.MustParseAddr("::1"), local.Addr())
	c.Abort()
	<-c.Done()
}

// TestStackOptionsPathProperties: the role-dependent defaults of
// useTemporaryLocalAddress and multipath reach the stack options.
func TestStackOptionsPathProperties(t *testing.T) {
	set := func(p Property, v any) *TransportProperties {
		tp := NewTransportProperties()
		require.NoError(t, tp.Set(p, v))
		return tp
	}
	tests := []struct {
		name      string
		tp        *TransportProperties
		r         role
		wantTmp   Preference
		wantMPTCP bool
	}{
		{"Initiate defaults: Prefer temporary, no multipath", NewTransportProperties(), roleInitiate, Prefer, false},
		{"Listen defaults: Avoid temporary, multipath Passive", NewTransportProperties(), roleListen, Avoid, true},
		{"Rendezvous defaults: Avoid temporary, no multipath", NewTransportProperties(), roleRendezvous, Avoid, false},
		{"Require temporary", set(UseTemporaryLocalAddress, Require), roleListen, Require, true},
		{"Prohibit temporary", set(UseTemporaryLocalAddress, Prohibit), roleInitiate, Prohibit, false},
		{"multipath Active", set(Multipath, MultipathActive), roleInitiate, Prefer, true},
		{"multipath Disabled on a listener", set(Multipath, MultipathDisabled), roleListen, Avoid, false},
	}
	for _, tt := range tests {
		o := stackOptions(tt.tp, tt.r)
		require.Equal(t, int8(tt.wantTmp), o.TemporaryAddress, tt.name)
		require.Equal(t, tt.wantMPTCP, o.MPTCP, tt.name)
	}
}

// TestTemporaryAddressPreferenceOnTheSocket: an initiated IPv6 TCP
// connection's socket carries IPV6_ADDR_PREFERENCES from the property
// (read back with getsockopt through a raw socket the stack dials).
func TestTemporaryAddressPreferenceOnTheSocket(t *testing.T) {
	if !hasIPv6Loopback() {
		t.Skip("no IPv6 loopback")
	}
	ctx := testCtx(t)
	for _, tc := range []struct {
		pref Preference
		want int
	}{
		{Prefer, stacks.IPv6PreferSrcTmp},
		{Avoid, stacks.IPv6PreferSrcPublic},
	} {
		tp := NewTransportProperties()
		require.NoError(t, tp.Set(UseTemporaryLocalAddress, tc.pref))
		ln, err := stacks.TCP().Listen(ctx, stacks.Options{Local: netip.MustParseAddrPort("[::1]:0")})
		require.NoError(t, err)
		o := stackOptions(tp, roleInitiate)
		tr, err := stacks.TCP().Dial(ctx, netip.MustParseAddrPort(ln.Addr().String()), o)
		require.NoError(t, err)
		rc, err := tr.(interface {
			SyscallConn() (syscall.RawConn, error)
		}).SyscallConn()
		require.NoError(t, err)
		v, err := stacks.AddrPreferences(rc)
		require.NoError(t, err)
		require.Equal(t, tc.want, v&(stacks.IPv6PreferSrcTmp|stacks.IPv6PreferSrcPublic), "%v: got %#x", tc.pref, v)
		require.NoError(t, tr.Close())
		require.NoError(t, ln.Close())
	}
}

// TestStackOptionsSendOnly: direction UnidirectionalSend, and it alone,
// asks the stacks for a send-only transport (QUIC dials a unidirectional
// stream), also through the encoded properties a Clone derives from.
func TestStackOptionsSendOnly(t *testing.T) {
	for _, tt := range []struct {
		d    CommunicationDirection
		want bool
	}{{Bidirectional, false}, {UnidirectionalSend, true}, {UnidirectionalReceive, false}} {
		tp := NewTransportProperties()
		require.NoError(t, tp.Set(Direction, tt.d))
		require.Equal(t, tt.want, stackOptions(tp, roleInitiate).SendOnly, tt.d.String())
		require.Equal(t, tt.want, stackOptionsFromMessage(propsToMessage(tp, false), stacks.Options{SendOnly: !tt.want}).SendOnly, tt.d.String())
	}
}
