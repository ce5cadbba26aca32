package actors

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// prohibitProps is an interface Selection Property Prohibiting ifname.
func prohibitProps(ifname string) *messages.Properties {
	return &messages.Properties{Values: map[string]*messages.PropertyValue{
		"interface": {Kind: &messages.PropertyValue_NamedPreferences{NamedPreferences: &messages.NamedPreferences{
			Preferences: map[string]int32{ifname: int32(stacks.Prohibit)}}}},
	}}
}

// upNonLoopback is an interface of the host that is up and not a
// loopback ("" when there is none).
func upNonLoopback(t *testing.T) string {
	t.Helper()
	ifs, err := stacks.Interfaces()
	require.NoError(t, err)
	for _, ifi := range ifs {
		if ifi.Up && ifi.Kind != stacks.KindLoopback {
			return ifi.Name
		}
	}
	return ""
}

// listenerTraces starts a System whose "listener" trace records go to the
// returned channel.
func listenerTraces(t *testing.T) (*System, <-chan *messages.TraceRecord) {
	t.Helper()
	traces := make(chan *messages.TraceRecord, 256)
	sys := NewSystem(Config{Tracer: func(r *messages.TraceRecord) {
		if r.Kind == "listener" {
			select {
			case traces <- r:
			default: // the test reads the records it awaits; a burst of others may be dropped
			}
		}
	}})
	return sys, traces
}

// awaitTrace waits (at most 10 s) for the listener's trace record event
// at local.
func awaitTrace(t *testing.T, traces <-chan *messages.TraceRecord, event, local string) *messages.TraceRecord {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case r := <-traces:
			if r.Event == event && r.Local == local {
				return r
			}
		case <-timeout:
			t.Fatalf("no %s trace record for %s", event, local)
			return nil
		}
	}
}

// TestListenerFollowsItsSites: a listener with a site bound by the
// interface property registers with the route monitor; after a burst of
// changes it binds the sites a new plan adds (on the same port), closes
// those it drops (a dial there is refused, the listener keeps serving the
// others), reports a site whose port is taken without stopping, and
// leaves the route monitor when it stops. The plan is the test's (the
// listener's planner), so that the host's own interface changes cannot
// interfere; the netns test in taps follows real interfaces.
func TestListenerFollowsItsSites(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the route monitor is Linux only")
	}
	other := upNonLoopback(t)
	if other == "" {
		t.Skip("needs an interface that is up besides the loopback, to Prohibit it")
	}
	sys, traces := listenerTraces(t)
	defer shutdown(t, sys)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cfg := &messages.ConnectionConfig{Stacks: []stacks.Stack{stacks.TCP()},
		Locals: []*messages.Endpoint{{IpAddress: "127.0.0.1"}}, Properties: prohibitProps(other)}
	res, err := Ask(ctx, sys, sys.Root, &messages.StartListening{Config: cfg})
	require.NoError(t, err)
	st := res.(*ListenerStarted)
	require.True(t, sys.PathMonitorRunning(), "a listener with a site bound by the interface property follows it")
	require.Contains(t, st.Ifaces, "lo")
	ap, ok := stacks.AddrPortOf(st.Addrs[0])
	require.True(t, ok)
	port := ap.Port()

	replan := scriptedPlan(t, ctx, sys, st.PID)
	at := func(addr string) string { return net.JoinHostPort(addr, strconv.Itoa(int(port))) }
	dial := func(addr string) error {
		c, err := net.DialTimeout("tcp4", at(addr), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		s, err := st.Queue.Accept(ctx)
		if err == nil {
			sys.AS.Root.Send(s.Conn, &messages.AbortConnection{Err: errors.New("test done")})
		}
		return err
	}

	// a site added: bound on the listener's port
	replan(loSite("127.0.0.1"), loSite("127.0.0.2"))
	awaitTrace(t, traces, "Listening", at("127.0.0.2")+"%lo")
	addrs, ifaces := st.Sockets.Get()
	var now []string
	for i, a := range addrs {
		now = append(now, a.String()+"%"+ifaces[i])
	}
	require.ElementsMatch(t, []string{at("127.0.0.1") + "%lo", at("127.0.0.2") + "%lo"}, now)
	require.NoError(t, dial("127.0.0.2"))
	require.NoError(t, dial("127.0.0.1"))

	// a site dropped: its socket closed, the others serve on
	replan(loSite("127.0.0.2"))
	awaitTrace(t, traces, "ListenClosed", "127.0.0.1:0%lo")
	require.ErrorIs(t, dial("127.0.0.1"), syscall.ECONNREFUSED)
	require.NoError(t, dial("127.0.0.2"))
	addrs, _ = st.Sockets.Get()
	require.Len(t, addrs, 1)
	require.Equal(t, at("127.0.0.2"), addrs[0].String())

	// a site whose port is taken: reported, the listener runs on
	taken, err := net.Listen("tcp4", at("127.0.0.3"))
	require.NoError(t, err)
	defer taken.Close()
	replan(loSite("127.0.0.2"), loSite("127.0.0.3"))
	r := awaitTrace(t, traces, "ListenFailed", "127.0.0.3:0%lo")
	require.Contains(t, r.Error, "address already in use")
	select {
	case <-st.Queue.Done():
		t.Fatal("the listener stopped")
	default:
	}
	require.NoError(t, dial("127.0.0.2"))

	require.NoError(t, StopAndWait(ctx, sys, st.PID))
	require.False(t, sys.PathMonitorRunning(), "a stopped listener leaves the route monitor")
}

// TestListenerWithoutFollowedSitesDoesNotWatch: explicit addresses, the
// wildcard, a local endpoint's own interface and Required interfaces never
// change with the host's interfaces: such listeners do not register with
// the route monitor.
func TestListenerWithoutFollowedSitesDoesNotWatch(t *testing.T) {
	require := require.New(t)
	required := &messages.Properties{Values: map[string]*messages.PropertyValue{
		"interface": {Kind: &messages.PropertyValue_NamedPreferences{NamedPreferences: &messages.NamedPreferences{
			Preferences: map[string]int32{"lo": int32(stacks.Require)}}}},
	}}
	for _, tc := range []struct {
		name   string
		locals []*messages.Endpoint
		props  *messages.Properties
	}{
		{"an explicit address", []*messages.Endpoint{{IpAddress: "127.0.0.1"}}, nil},
		{"the wildcard", nil, nil},
		{"the endpoint's interface", []*messages.Endpoint{{Interface: "lo"}}, nil},
		{"a Required interface", []*messages.Endpoint{{IpAddress: "127.0.0.1"}}, required},
	} {
		sys := NewSystem(Config{})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		cfg := &messages.ConnectionConfig{Stacks: []stacks.Stack{stacks.TCP()}, Locals: tc.locals, Properties: tc.props}
		res, err := Ask(ctx, sys, sys.Root, &messages.StartListening{Config: cfg})
		require.NoError(err, tc.name)
		st := res.(*ListenerStarted)
		require.False(sys.PathMonitorRunning(), tc.name)
		addrs, _ := st.Sockets.Get()
		require.Equal(st.Addrs, addrs, tc.name)
		require.NoError(StopAndWait(ctx, sys, st.PID), tc.name)
		cancel()
		shutdown(t, sys)
	}
}

// loSite is a listen site on addr (any port) of the loopback interface.
func loSite(addr string) listenSite {
	return listenSite{local: netip.AddrPortFrom(netip.MustParseAddr(addr), 0), iface: "lo"}
}

// scriptedPlan makes the listener pid plan from the sites the returned
// replan was last given (setListenPlanner), and replans at each call.
func scriptedPlan(t *testing.T, ctx context.Context, sys *System, pid *actor.PID) (replan func(sites ...listenSite)) {
	t.Helper()
	var next atomic.Pointer[[]listenSite]
	_, err := Ask(ctx, sys, pid, &setListenPlanner{plan: func() ([]listenSite, error) { return *next.Load(), nil }})
	require.NoError(t, err)
	return func(sites ...listenSite) {
		next.Store(&sites)
		sys.AS.Root.Send(pid, &pathCheck{})
	}
}
