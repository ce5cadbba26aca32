package taps

// Tests of the claims the public API's doc comments make: every default
// they state is read back through the API (or, where only behaviour shows
// it, measured), and every concurrency promise without a test elsewhere
// is exercised under -race.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotaps/gotaps/actors"
	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// docComments parses file (of this package) and returns the doc comment
// of every constant and of every method of recv, by name.
func docComments(t *testing.T, file, recv string) (consts, methods map[string]string) {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ParseComments)
	require.NoError(t, err)
	consts, methods = map[string]string{}, map[string]string{}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.GenDecl:
			if d.Tok != token.CONST {
				continue
			}
			for _, s := range d.Specs {
				vs := s.(*ast.ValueSpec)
				for _, n := range vs.Names {
					consts[n.Name] = vs.Doc.Text()
				}
			}
		case *ast.FuncDecl:
			if d.Recv == nil || len(d.Recv.List) != 1 {
				continue
			}
			if st, ok := d.Recv.List[0].Type.(*ast.StarExpr); ok {
				if id, ok := st.X.(*ast.Ident); ok && id.Name == recv {
					methods[d.Name.Name] = d.Doc.Text()
				}
			}
		}
	}
	return consts, methods
}

// docValues are the words a doc comment names a default with.
var docValues = map[string]any{
	"Require": Require, "Prefer": Prefer, "NoPreference": NoPreference, "Avoid": Avoid, "Prohibit": Prohibit,
	"Disabled": Disabled, "Unlimited": Unlimited, "FullCoverage": FullCoverage, "Infinite": Infinite,
	"false": false, "true": true,
	"Bidirectional": Bidirectional, "WeightedFairQueueing": WeightedFairQueueing,
	"CapacityDefault": CapacityDefault, "Handover": Handover,
	"MultipathDisabled": MultipathDisabled, "MultipathPassive": MultipathPassive,
	"empty": map[string]Preference{},
}

var (
	reDefault    = regexp.MustCompile(`(?i)\bdefault:? ([^.;(),]+)`)
	reTheDefault = regexp.MustCompile(`(\w+) \(the default\)`)
	reForRole    = regexp.MustCompile(`(\w+) for (Initiate|Listen)`)
	reDuration   = regexp.MustCompile(`^(\d+) (minutes|s|ms)$`)
	reReadBack   = regexp.MustCompile(`^(?:the Connection's )?(\w+)(?: as read back from the Connection)?$`)
)

// docDefault reads the default a doc comment states for p, as the value
// tp.Get(p) must return for an initiated connection (listen false) or a
// Listener's (listen true).
func docDefault(t *testing.T, doc string, p Property, tp *TransportProperties, listen bool) any {
	t.Helper()
	doc = strings.Join(strings.Fields(doc), " ")
	if m := reTheDefault.FindStringSubmatch(doc); m != nil {
		v, ok := docValues[m[1]]
		require.True(t, ok, "%s: unknown default %q", p, m[1])
		return v
	}
	m := reDefault.FindStringSubmatch(doc)
	require.NotNil(t, m, "%s: the doc comment states no default: %q", p, doc)
	phrase := strings.TrimSpace(m[1])
	if strings.HasPrefix(phrase, "depends on the role") {
		want := map[string]string{}
		for _, r := range reForRole.FindAllStringSubmatch(doc, -1) {
			want[r[2]] = r[1]
		}
		role := "Initiate"
		if listen {
			role = "Listen"
		}
		v, ok := docValues[want[role]]
		require.True(t, ok, "%s: no default for %s in %q", p, role, doc)
		return v
	}
	// "true on a Preconnection", "false: fragmentation allowed", "100"
	word := strings.Fields(strings.TrimSuffix(phrase, ":"))[0]
	word = strings.TrimSuffix(word, ":")
	if v, ok := docValues[word]; ok {
		return v
	}
	if n, err := strconv.ParseInt(word, 10, 64); err == nil {
		if d := reDuration.FindStringSubmatch(phrase); d != nil {
			unit := map[string]time.Duration{"minutes": time.Minute, "s": time.Second, "ms": time.Millisecond}[d[2]]
			return time.Duration(n) * unit
		}
		return n
	}
	// a default inherited from another property ("preserveOrder as read
	// back from the Connection", "connCapacityProfile")
	if r := reReadBack.FindStringSubmatch(phrase); r != nil {
		q, err := ParseProperty(r[1])
		require.NoError(t, err, "%s: default phrase %q", p, phrase)
		v, _ := tp.Get(q)
		if pref, ok := v.(Preference); ok { // read back: provided when Required or Preferred
			return pref == Require || pref == Prefer
		}
		return v
	}
	t.Fatalf("%s: cannot read the default phrase %q", p, phrase)
	return nil
}

// Every property's constant states its default, and NewTransportProperties
// (and the zero value, and ForRole) holds exactly that default. The RFC 9622
// table in properties_test.go (propRFCDefaults) checks the same values
// against the RFC: the doc, the code and the RFC agree.
func TestDocPropertyDefaultsMatchTheirComments(t *testing.T) {
	consts, _ := docComments(t, "properties.go", "")
	tp := NewTransportProperties()
	checked := 0
	for _, p := range tp.Properties() {
		constName := propDocName(p)
		doc, ok := consts[constName]
		require.True(t, ok, "no constant documents %s", p)
		if p.Kind() == KindReadOnly {
			assert.NotRegexp(t, reDefault, doc, "%s is read-only: no default", p)
			continue
		}
		for _, listen := range []bool{false, true} {
			want := docDefault(t, doc, p, tp, listen)
			got, ok := tp.ForRole(listen).Get(p)
			require.True(t, ok, "%s", p)
			assert.Equal(t, want, got, "%s (listen %v): doc says %v, Get returns %v", p, listen, want, got)
		}
		var zero TransportProperties
		got, _ := zero.Get(p)
		assert.Equal(t, docDefault(t, doc, p, tp, false), got, "%s: zero TransportProperties", p)
		checked++
	}
	assert.Equal(t, len(tp.Properties())-len(propReadOnlyList), checked)

	// the inherited defaults follow what they inherit from
	tp = NewTransportProperties()
	require.NoError(t, tp.Prohibit(PreserveOrder))
	require.NoError(t, tp.Avoid(Reliability))
	require.NoError(t, tp.Set(ConnCapacityProfile, Scavenger))
	for _, p := range []Property{MsgOrdered, MsgReliable, MsgCapacityProfile} {
		got, _ := tp.Get(p)
		assert.Equal(t, docDefault(t, consts[propDocName(p)], p, tp, false), got, "%s", p)
	}
	got, _ := tp.Get(MsgOrdered)
	assert.Equal(t, false, got, "msgOrdered follows a Prohibited preserveOrder")
	got, _ = tp.Get(MsgCapacityProfile)
	assert.Equal(t, Scavenger, got, "msgCapacityProfile follows connCapacityProfile")
}

// propDocNames names the constant of each property.
var propDocNames = func() []struct {
	p    Property
	name string
} {
	all := map[string]Property{
		"Reliability": Reliability, "PreserveMsgBoundaries": PreserveMsgBoundaries, "PerMsgReliability": PerMsgReliability,
		"PreserveOrder": PreserveOrder, "ZeroRTTMsg": ZeroRTTMsg, "Multistreaming": Multistreaming,
		"FullChecksumSend": FullChecksumSend, "FullChecksumRecv": FullChecksumRecv, "CongestionControl": CongestionControl,
		"KeepAlive": KeepAlive, "Interface": Interface, "PvD": PvD, "UseTemporaryLocalAddress": UseTemporaryLocalAddress,
		"Multipath": Multipath, "AdvertisesAltaddr": AdvertisesAltaddr, "Direction": Direction,
		"SoftErrorNotify": SoftErrorNotify, "ActiveReadBeforeSend": ActiveReadBeforeSend, "RetransmitNotify": RetransmitNotify,
		"RecvChecksumLen": RecvChecksumLen, "ConnPriority": ConnPriority, "ConnTimeout": ConnTimeout,
		"KeepAliveTimeout": KeepAliveTimeout, "ConnScheduler": ConnScheduler, "ConnCapacityProfile": ConnCapacityProfile,
		"MultipathPolicy": MultipathPolicy, "MinSendRate": MinSendRate, "MinRecvRate": MinRecvRate,
		"MaxSendRate": MaxSendRate, "MaxRecvRate": MaxRecvRate, "GroupConnLimit": GroupConnLimit,
		"IsolateSession": IsolateSession, "RetransmitNotifyThreshold": RetransmitNotifyThreshold,
		"ConnState": ConnState, "CanSend": CanSend, "CanReceive": CanReceive,
		"SingularTransmissionMsgMaxLen": SingularTransmissionMsgMaxLen, "SendMsgMaxLen": SendMsgMaxLen,
		"RecvMsgMaxLen": RecvMsgMaxLen, "TCPUserTimeoutValue": TCPUserTimeoutValue,
		"TCPUserTimeoutEnabled": TCPUserTimeoutEnabled, "TCPUserTimeoutChangeable": TCPUserTimeoutChangeable,
		"MsgLifetime": MsgLifetime, "MsgPriority": MsgPriority, "MsgOrdered": MsgOrdered,
		"SafelyReplayable": SafelyReplayable, "Final": Final, "MsgChecksumLen": MsgChecksumLen,
		"MsgReliable": MsgReliable, "MsgCapacityProfile": MsgCapacityProfile, "NoFragmentation": NoFragmentation,
		"NoSegmentation": NoSegmentation,
	}
	var out []struct {
		p    Property
		name string
	}
	for n, p := range all {
		out = append(out, struct {
			p    Property
			name string
		}{p, n})
	}
	return out
}()

func propDocName(p Property) string {
	for _, tt := range propDocNames {
		if tt.p == p {
			return tt.name
		}
	}
	return ""
}

// A fresh Connection's GetProperties reads back the documented default of
// every Connection and Message Property, on both sides, except where the
// doc says the Connection reads back what the socket really does
// (tcp.userTimeoutChangeable: false, Linux has no UTO option).
func TestDocFreshConnectionReadsBackDefaults(t *testing.T) {
	consts, _ := docComments(t, "properties.go", "")
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	c, s := dialAccept(t, sys, ln)
	defer func() { c.Abort(); s.Abort(); <-c.Done(); <-s.Done() }()
	readBack := map[Property]any{TCPUserTimeoutChangeable: false}
	assert.Contains(t, consts["TCPUserTimeoutChangeable"], "a Connection reads it back as false")
	tp := NewTransportProperties()
	for _, side := range []struct {
		c      *Connection
		listen bool
	}{{c, false}, {s, true}} {
		props, err := side.c.GetPropertiesContext(testCtx(t))
		require.NoError(t, err)
		for _, p := range tp.Properties() {
			if k := p.Kind(); k != KindConnection && k != KindMessage {
				continue // Selection Properties read back as booleans (Selected)
			}
			want := docDefault(t, consts[propDocName(p)], p, tp, side.listen)
			if v, ok := readBack[p]; ok {
				want = v
			}
			got, ok := props.Get(p)
			require.True(t, ok, "%s", p)
			assert.Equal(t, want, got, "%s (listen %v)", p, side.listen)
		}
	}
}

// The fluent setters of MessageContext name the default a Message takes
// when the setter is not called: the Connection's default Message
// Property (MessageContext: "Properties not set on the context take the
// defaults of the Connection"), which follows the TransportProperties the
// Connection was made with: a profile's or an explicitly set value, else
// the RFC 9622 default of the property's constant.
func TestDocMessageContextSetterDefaults(t *testing.T) {
	_, methods := docComments(t, "message_context.go", "MessageContext")
	setters := map[string]Property{
		"Lifetime": MsgLifetime, "Priority": MsgPriority, "Ordered": MsgOrdered,
		"SafelyReplayable": SafelyReplayable, "Final": Final, "ChecksumLen": MsgChecksumLen,
		"Reliable": MsgReliable, "CapacityProfile": MsgCapacityProfile,
		"NoFragmentation": NoFragmentation, "NoSegmentation": NoSegmentation,
	}
	custom := NewTransportProperties()
	require.NoError(t, custom.Set(MsgPriority, 7))
	require.NoError(t, custom.Set(MsgLifetime, time.Second))
	require.NoError(t, custom.Set(NoFragmentation, true))
	require.NoError(t, custom.Set(NoSegmentation, true))
	require.NoError(t, custom.Set(ConnCapacityProfile, Scavenger))
	require.NoError(t, custom.Avoid(FullChecksumSend))
	require.NoError(t, custom.Set(MsgChecksumLen, 8))
	for i, tp := range []*TransportProperties{NewTransportProperties(), NewTransportProperties(UnreliableDatagram), custom} {
		for name, p := range setters {
			doc, ok := methods[name]
			require.True(t, ok, "MessageContext.%s", name)
			want, ok := tp.Get(p)
			require.True(t, ok)
			assert.Equal(t, want, docDefault(t, doc, p, tp, false),
				"#%d: MessageContext.%s's doc states the default %s of a Message", i, name, p)
		}
	}
}

// On an UnreliableDatagram connection a Message whose context leaves
// safelyReplayable unset takes the Connection's default, true (the
// profile's): UDP sends it. (MessageContext.SafelyReplayable's doc said
// "default false", which would have made it an ErrNotReplayable.)
func TestDocUnreliableDatagramMessagesAreSafelyReplayableByDefault(t *testing.T) {
	sys := newTestSystem(t)
	pc := rawUDP(t)
	c, err := NewPreconnection(WithSystem(sys), WithTransportProperties(NewTransportProperties(UnreliableDatagram)),
		WithRemoteEndpoint(loopbackRemote(pc.LocalAddr().(*net.UDPAddr).AddrPort()))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	require.Equal(t, "udp", c.GetProperties().Stack)
	require.NoError(t, c.Send(testCtx(t), []byte("default"), NewMessageContext()))
	require.Equal(t, "default", string(readDatagram(t, pc)))
	err = c.Send(testCtx(t), []byte("marked not replayable"), NewMessageContext().SafelyReplayable(false))
	require.ErrorIs(t, err, ErrNotReplayable, "the check the default passes")
}

// WithAttemptDelay: "default 250 ms; clamped to [10 ms, 2 s]".
func TestDocAttemptDelayDefault(t *testing.T) {
	for i, tt := range []struct{ in, want time.Duration }{
		{0, 250 * time.Millisecond},
		{time.Nanosecond, 10 * time.Millisecond},
		{-time.Second, 10 * time.Millisecond},
		{100 * time.Millisecond, 100 * time.Millisecond},
		{time.Hour, 2 * time.Second},
	} {
		if got := actors.ClampAttemptDelay(tt.in); got != tt.want {
			t.Errorf("#%d: ClampAttemptDelay(%v) = %v; want %v", i, tt.in, got, tt.want)
		}
	}
	// without the option, the second candidate of a race whose first never
	// answers starts one default delay after Initiate
	t.Parallel()
	sys := newTestSystem(t)
	dead, live := deadListener(t), drainListener(t)
	c, _ := raceTo(t, sys, 0, dead, live)
	defer func() { c.Abort(); <-c.Done() }()
	checkDeadFirstReport(t, c, 250*time.Millisecond, live)
	start := c.EstablishmentReport().Attempts[1].Start
	require.Less(t, start, time.Second, "the default stagger is 250 ms, not the 2 s maximum")
}

// WithLingerTimeout: a graceful Close waits for the peer's end of stream at
// most 5 s by default (and when given 0). A Unix socket is never
// quiescent-closed at once, so Close lingers.
func TestDocLingerTimeoutDefault(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		opts     []PreconnectionOption
		min, max time.Duration
	}{
		{"default", nil, 5 * time.Second, 9 * time.Second},
		{"zero", []PreconnectionOption{WithLingerTimeout(0)}, 5 * time.Second, 9 * time.Second},
		{"300ms", []PreconnectionOption{WithLingerTimeout(300 * time.Millisecond)}, 300 * time.Millisecond, 4 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sys := newTestSystem(t)
			path := filepath.Join(t.TempDir(), "linger.sock")
			ln, err := net.Listen("unix", path)
			require.NoError(t, err)
			t.Cleanup(func() { ln.Close() })
			opts := append([]PreconnectionOption{WithSystem(sys), WithRemoteEndpoint(NewRemoteEndpoint().WithUnixPath(path))}, tt.opts...)
			c, err := NewPreconnection(opts...).Initiate(testCtx(t))
			require.NoError(t, err)
			peer, err := ln.Accept()
			require.NoError(t, err)
			t.Cleanup(func() { peer.Close() })
			start := time.Now()
			require.NoError(t, c.Close())
			// the peer sees the end of stream at once, and never ends its own
			n, err := peer.Read(make([]byte, 1))
			require.Zero(t, n)
			require.Error(t, err)
			select {
			case <-c.Done():
			case <-time.After(20 * time.Second):
				t.Fatal("Close lingered beyond any linger timeout")
			}
			took := time.Since(start)
			t.Logf("Closed after %v", took)
			require.GreaterOrEqual(t, took, tt.min)
			require.Less(t, took, tt.max)
		})
	}
}

// WithSendBuffer: "default 4 MiB: beyond it Send waits and SendAsync
// reports ErrSendQueueFull". Inside Batch nothing is written yet, so the
// queue holds exactly what SendAsync accepted.
func TestDocSendBufferDefault(t *testing.T) {
	for _, tt := range []struct {
		name  string
		opts  []PreconnectionOption
		limit int
	}{
		{"default", nil, 4 << 20},
		{"zero", []PreconnectionOption{WithSendBuffer(0)}, 4 << 20},
		{"1MiB", []PreconnectionOption{WithSendBuffer(1 << 20)}, 1 << 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sys := newTestSystem(t)
			opts := append([]PreconnectionOption{WithSystem(sys), WithRemoteEndpoint(remote(drainListener(t)))}, tt.opts...)
			c, err := NewPreconnection(opts...).Initiate(testCtx(t))
			require.NoError(t, err)
			defer func() { c.Abort(); <-c.Done() }()
			const chunk = 256 << 10
			results := make(chan error, tt.limit/chunk+1)
			c.Batch(func() {
				for range tt.limit / chunk {
					c.SendAsync(make([]byte, chunk), nil, func(_ *Connection, err error) { results <- err })
				}
				c.SendAsync([]byte{1}, nil, func(_ *Connection, err error) { results <- err })
			})
			full := 0
			for range tt.limit/chunk + 1 {
				select {
				case err := <-results:
					if errors.Is(err, ErrSendQueueFull) {
						full++
					} else {
						require.NoError(t, err)
					}
				case <-testCtx(t).Done():
					t.Fatal("a SendAsync handler was not called")
				}
			}
			require.Equal(t, 1, full, "the byte beyond %d queued bytes, and only it, finds the queue full", tt.limit)
		})
	}
	// one message larger than the bound is taken when nothing is queued
	sys := newTestSystem(t)
	c, err := NewPreconnection(WithSystem(sys), WithSendBuffer(1024), WithRemoteEndpoint(remote(drainListener(t)))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	require.NoError(t, c.Send(testCtx(t), make([]byte, 64<<10), nil))
}

// WithReceiveBuffer: "default 4 MiB". Without the option (or with 0) the
// Preconnection leaves the bound to the Link, whose default it is.
func TestDocReceiveBufferDefault(t *testing.T) {
	require.Equal(t, 4<<20, actors.DefaultRecvBufferLimit)
	require.Equal(t, 4<<20, actors.DefaultSendBufferLimit)
	for _, opts := range [][]PreconnectionOption{nil, {WithReceiveBuffer(0)}} {
		pre := NewPreconnection(append(opts, WithRemoteEndpoint(remote(refusedAddr(t))))...)
		cfg, _, err := pre.snapshot(roleInitiate)
		require.NoError(t, err)
		require.Zero(t, cfg.RecvBufferLimit, "no bound given: the Link's default")
		require.Zero(t, cfg.SendBufferLimit)
	}
}

// ReestablishPolicy: "Zero fields take their defaults (100 ms initial
// wait, doubling, at most 10 s, 10 attempts in a row, a row ended by a
// transport up StableAfter = Max)".
func TestDocReestablishPolicyDefaults(t *testing.T) {
	got := ReestablishPolicy{}.Normalized()
	want := ReestablishPolicy{Initial: 100 * time.Millisecond, Max: 10 * time.Second, Multiplier: 2, MaxAttempts: 10,
		StableAfter: 10 * time.Second}
	require.Equal(t, want, got)
	pre := NewPreconnection(WithReestablishment(ReestablishPolicy{}))
	require.Equal(t, &want, pre.reestablish, "WithReestablishment applies them")
	require.Equal(t, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond},
		[]time.Duration{got.Delay(1), got.Delay(2), got.Delay(3)}, "doubling")
	require.Equal(t, 10*time.Second, got.Delay(20), "at most 10 s")
}

// SecurityParameters.SetMinVersion: "tls.VersionTLS12 by default".
func TestDocSecurityMinVersionDefault(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	for _, listen := range []bool{false, true} {
		sec := NewSecurityParameters()
		if listen {
			sec.SetIdentity(pki.server)
		}
		cfg, err := tlsConfig(sec, listen, false, sys)
		require.NoError(t, err)
		require.Equal(t, uint16(tls.VersionTLS12), cfg.MinVersion)
		cfg, err = tlsConfig(sec.SetMinVersion(tls.VersionTLS13), listen, false, sys)
		require.NoError(t, err)
		require.Equal(t, uint16(tls.VersionTLS13), cfg.MinVersion, "an explicit version is kept")
	}
}

// MinIncompleteLength and MaxLength: "The default is infinite": a framed
// Message of 1 MiB arrives whole from a Receive without options.
func TestDocReceiveOptionDefaults(t *testing.T) {
	sys := newTestSystem(t)
	c, peer := rawPeer(t, sys, framers.NewLengthPrefix())
	defer func() { c.Abort(); <-c.Done() }()
	body := strings.Repeat("m", 1<<20)
	go func() { _, _ = peer.Write(frame(body)) }()
	m, err := c.Receive(testCtx(t))
	require.NoError(t, err)
	require.True(t, m.EndOfMessage)
	require.Equal(t, len(body), len(m.Data))
}

// NoConnectionLimit is the default: a Listener nobody limited delivers
// every connection; a negative limit is NoConnectionLimit.
func TestDocListenerConnectionLimitDefault(t *testing.T) {
	require.EqualValues(t, -1, NoConnectionLimit)
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	for range 3 {
		c, s := dialAccept(t, sys, ln)
		c.Abort()
		s.Abort()
	}
	require.NoError(t, ln.SetNewConnectionLimit(0))
	require.NoError(t, ln.SetNewConnectionLimit(-7))
	c, s := dialAccept(t, sys, ln)
	c.Abort()
	s.Abort()
	ln.Stop()
	<-ln.Done()
}

// Connection: "Its methods are safe for concurrent use." Senders using
// Send and SendAsync on one connection at once, all with one shared
// MessageContext that another goroutine keeps changing (MessageContext:
// safe for concurrent use; each Send takes a snapshot), while others call
// SetProperty and GetProperties: every message arrives whole and exactly
// once, and each SendAsync handler is called once with Sent.
func TestDocConcurrentSendersSetPropertyAndSharedContext(t *testing.T) {
	const senders, each = 6, 150
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys, framers.NewLengthPrefix())
	c, s := dialAccept(t, sys, ln, framers.NewLengthPrefix())
	defer func() { c.Abort(); s.Abort(); <-c.Done(); <-s.Done() }()
	ctx := testCtx(t)
	mc := NewMessageContext()
	stop := make(chan struct{})
	var side sync.WaitGroup
	side.Go(func() { // changes the shared context under the senders
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			mc.Priority(i % 200).Lifetime(time.Hour + time.Duration(i))
		}
	})
	var props atomic.Int64
	side.Go(func() { // changes and reads connection properties during the sends
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := c.SetProperty(ConnPriority, i%50); err != nil {
				t.Error(err)
				return
			}
			if err := c.SetProperty(KeepAliveTimeout, time.Duration(i%5+1)*time.Minute); err != nil {
				t.Error(err)
				return
			}
			if _, err := c.GetPropertiesContext(ctx); err != nil {
				t.Error(err)
				return
			}
			props.Add(1)
		}
	})
	var sent sync.WaitGroup
	var handled atomic.Int64
	for g := range senders {
		sent.Go(func() {
			for i := range each {
				msg := fmt.Appendf(nil, "%d/%d/%s", g, i, strings.Repeat("x", (g*each+i)%3000))
				if g%2 == 0 {
					if err := c.Send(ctx, msg, mc); err != nil {
						t.Errorf("Send: %v", err)
						return
					}
					continue
				}
				sent.Add(1)
				c.SendAsync(msg, mc, func(_ *Connection, err error) {
					defer sent.Done()
					if err != nil {
						t.Errorf("SendAsync: %v", err)
					}
					handled.Add(1)
				})
			}
		})
	}
	seen := make(map[string]bool, senders*each)
	for len(seen) < senders*each {
		m, err := s.Receive(ctx)
		require.NoError(t, err)
		require.True(t, m.EndOfMessage)
		var g, i int
		var pad string
		_, err = fmt.Sscanf(string(m.Data), "%d/%d/%s", &g, &i, &pad)
		if (g*each+i)%3000 == 0 {
			err = nil // no padding
			pad = ""
		}
		require.NoError(t, err, "message %.40q", m.Data)
		require.Equal(t, (g*each+i)%3000, len(pad), "message %d/%d arrives whole", g, i)
		key := fmt.Sprintf("%d/%d", g, i)
		require.False(t, seen[key], "message %s delivered twice", key)
		seen[key] = true
	}
	sent.Wait()
	close(stop)
	side.Wait()
	require.EqualValues(t, senders/2*each, handled.Load(), "each SendAsync handler called once")
	require.Positive(t, props.Load())
	got, ok := c.GetProperties().Get(ConnPriority)
	require.True(t, ok)
	require.Less(t, got.(int64), int64(50))
}

// MessageContext: "Changing a context after it was passed to Send has no
// effect on that Send: Send takes a snapshot." Inside Batch nothing is
// framed until Batch ends, so the framer sees each message's context only
// after it was changed: each message still carries the header its context
// held when it was sent.
func TestDocSendTakesASnapshotOfTheMessageContext(t *testing.T) {
	sys := newTestSystem(t)
	fh, err := framers.NewFixedHeader(2, 1, 1)
	require.NoError(t, err)
	c, peer := rawPeer(t, sys, fh)
	defer func() { c.Abort(); <-c.Done() }()
	mc := NewMessageContext().SetFramerMetadata(fh, framers.HeaderMetadataKey, []byte("A"))
	results := make(chan error, 2)
	done := func(_ *Connection, err error) { results <- err }
	c.Batch(func() {
		c.SendAsync([]byte("first"), mc, done)
		mc.SetFramerMetadata(fh, framers.HeaderMetadataKey, []byte("B"))
		c.SendAsync([]byte("second"), mc, done)
		mc.SetFramerMetadata(fh, framers.HeaderMetadataKey, []byte("C"))
	})
	require.NoError(t, <-results)
	require.NoError(t, <-results)
	require.NoError(t, peer.SetReadDeadline(time.Now().Add(10*time.Second)))
	for _, want := range []string{"A\x05first", "B\x06second"} {
		b := make([]byte, len(want))
		_, err := io.ReadFull(peer, b)
		require.NoError(t, err)
		require.Equal(t, want, string(b))
	}
}

// Listener: "Its methods are safe for concurrent use", and Accept "After
// Stop ... returns the connections already received, then an error
// unwrapping to ErrClosed": Accepts pending in several goroutines when
// Stop is called all end with ErrClosed, none hangs, and an Accept after
// Stop does the same.
func TestDocListenerStopDuringAccept(t *testing.T) {
	const acceptors = 4
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	ctx := testCtx(t)
	got := make(chan *Connection, 8)
	errs := make(chan error, acceptors)
	for range acceptors {
		go func() {
			for {
				c, err := ln.Accept(ctx)
				if err != nil {
					errs <- err
					return
				}
				got <- c
			}
		}()
	}
	var clients []*Connection
	for range 3 {
		clients = append(clients, dialTCP(t, sys, ln))
	}
	for range 3 { // every connection is accepted once
		select {
		case s := <-got:
			s.Abort()
		case <-ctx.Done():
			t.Fatal("a connection was not accepted")
		}
	}
	ln.Stop()
	for range acceptors {
		select {
		case err := <-errs:
			require.ErrorIs(t, err, ErrClosed)
		case <-ctx.Done():
			t.Fatal("an Accept pending at Stop did not return")
		}
	}
	<-ln.Done()
	_, err := ln.Accept(ctx)
	require.ErrorIs(t, err, ErrClosed)
	require.Empty(t, got, "no connection delivered twice")
	for _, c := range clients {
		c.Abort()
		<-c.Done()
	}
}

// Connection.Close from several goroutines at once: each returns nil
// (the connection is closing) or an error unwrapping to ErrClosed (it is
// Closed), the connection is Closed once, and Close after Done returns
// ErrClosed.
func TestDocConcurrentClose(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	c, s := dialAccept(t, sys, ln)
	var closed atomic.Int32
	c.OnClosed(func(*Connection) { closed.Add(1) })
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if err := c.Close(); err != nil && !errors.Is(err, ErrClosed) {
				t.Errorf("Close: %v", err)
			}
		})
	}
	wg.Wait()
	require.NoError(t, s.Close()) // the peer's end of stream ends the linger
	<-c.Done()
	<-s.Done()
	require.NoError(t, c.Err())
	require.ErrorIs(t, c.Close(), ErrClosed)
	require.EqualValues(t, 1, closed.Load(), "one Closed event")
}

// Message.Release: "Call it at most once". A second call before the
// connection's next Receive finds nothing to hand back and does nothing:
// the next messages, received into the released buffer, arrive intact.
func TestDocMessageReleaseTwice(t *testing.T) {
	sys := newTestSystem(t)
	c, peer := rawPeer(t, sys, framers.NewLengthPrefix())
	defer func() { c.Abort(); <-c.Done() }()
	a, b, d := strings.Repeat("a", 64<<10), strings.Repeat("b", 64<<10), strings.Repeat("d", 64<<10)
	go func() { _, _ = peer.Write(frame(a, b, d)) }()
	ctx := testCtx(t)
	m, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, a, string(m.Data))
	m.Release()
	require.Nil(t, m.Data)
	m.Release()
	require.Nil(t, m.Data)
	m2, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, b, string(m2.Data))
	m3, err := c.Receive(ctx)
	require.NoError(t, err)
	require.Equal(t, d, string(m3.Data))
	require.Equal(t, b, string(m2.Data), "a later message did not reuse a buffer still in use")
}

// WithResolver: the lookup function is called for "ip6" and "ip4" at the
// same time (RFC 8305 §3: both queries go out at once), so it must be safe
// for concurrent use, and it must return once its ctx ends: Initiate goes
// on with the IPv4 address after the resolution delay, and an AAAA lookup
// that never answers is cancelled when the race is won, and has returned
// before Initiate does.
func TestDocResolverCalledConcurrentlyAndCancelled(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	v4in := make(chan struct{})
	var sawBoth, v6cancelled atomic.Bool
	lookup := func(ctx context.Context, network, host string) ([]netip.Addr, error) {
		switch network {
		case "ip4":
			close(v4in)
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		case "ip6":
			select { // still in flight while the ip4 lookup runs
			case <-v4in:
				sawBoth.Store(true)
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			<-ctx.Done() // never answers: Resolve must cancel it
			v6cancelled.Store(true)
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("network %q", network)
	}
	c, err := NewPreconnection(WithSystem(sys), WithResolver(lookup),
		WithRemoteEndpoint(NewRemoteEndpoint().WithHostName("doc.test").WithPort(listenerAddr(t, ln).Port()))).Initiate(testCtx(t))
	require.NoError(t, err)
	defer func() { c.Abort(); <-c.Done() }()
	require.True(t, sawBoth.Load(), "both lookups were in flight at once")
	require.True(t, v6cancelled.Load(), "the unanswered lookup's ctx was cancelled before Initiate returned")
}

// Preconnection, LocalEndpoint, RemoteEndpoint and SecurityParameters:
// "Methods are safe for concurrent use". Initiates from one Preconnection
// run while other goroutines change its endpoints (setters and AddRemote),
// its handlers and a SecurityParameters: no race, and every Initiate
// reaches the listener.
func TestDocPreconnectionAndEndpointsConcurrentUse(t *testing.T) {
	sys := newTestSystem(t)
	ln := listenLoopback(t, sys)
	ap := listenerAddr(t, ln)
	r := NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap.Port())
	l := NewLocalEndpoint().WithIPAddress("127.0.0.1")
	pre := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(r), WithLocalEndpoint(l))
	sec := NewSecurityParameters()
	go func() { // (the System's Shutdown ends what it accepts: an abort at
		// once could reset a client still in connect)
		for {
			if _, err := ln.Accept(testCtx(t)); err != nil {
				return
			}
		}
	}()
	ctx := testCtx(t)
	var readies atomic.Int64
	stop := make(chan struct{})
	var side sync.WaitGroup
	side.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			r.WithPort(ap.Port()) // the same value: every Initiate still reaches ln
			l.WithPort(0)
			_, _ = r.String(), l.String()
			pre.AddRemote(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap.Port()))
			pre.OnReady(func(*Connection) { readies.Add(1) })
			sec.SetALPN(fmt.Sprint(i)).SetServerName("doc.test")
			_ = sec.Mode()
			if _, err := tlsConfig(sec, false, false, sys); err != nil {
				t.Error(err)
				return
			}
		}
	})
	var conns sync.WaitGroup
	const initiates = 12
	for range initiates {
		conns.Go(func() {
			c, err := pre.Initiate(ctx)
			if err != nil {
				t.Errorf("Initiate: %v", err)
				return
			}
			c.Abort()
			<-c.Done()
		})
	}
	conns.Wait()
	close(stop)
	side.Wait()
}

// Dialer: "The function is safe for concurrent use; later changes to pre
// affect later dials." Dials to two addresses from many goroutines at
// once through one dial function each reach the address asked for (pre's
// own remotes, changed meanwhile, are replaced); a handler set on pre
// afterwards runs for the later dials.
func TestDocDialerConcurrentUse(t *testing.T) {
	sys := newTestSystem(t)
	a, b := drainListener(t), drainListener(t)
	pre := NewPreconnection(WithSystem(sys))
	dial := Dialer(pre)
	ctx := testCtx(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			to := a
			if g%2 == 1 {
				to = b
			}
			for range 5 {
				pre.AddRemote(remote(refusedAddr(t))) // never used by the dial function
				nc, err := dial(ctx, "tcp", to.String())
				if err != nil {
					t.Errorf("dial %v: %v", to, err)
					return
				}
				if got := nc.RemoteAddr().(*net.TCPAddr).AddrPort(); got != to {
					t.Errorf("dialed %v, connected to %v", to, got)
				}
				_ = nc.Close()
			}
		})
	}
	wg.Wait()
	readies := make(chan *Connection, 1)
	pre.OnReady(func(c *Connection) { readies <- c })
	nc, err := dial(ctx, "tcp", a.String())
	require.NoError(t, err)
	defer nc.Close()
	select {
	case <-readies:
	case <-ctx.Done():
		t.Fatal("a handler set on pre after Dialer did not run for a later dial")
	}
}

// Batch: the batch is the Connection's, not the goroutine's: a SendAsync
// from another goroutine while fn runs joins it, in call order. Were it
// sent at once, "2" would arrive before "1", which the batch still holds.
func TestDocBatchTakesOtherGoroutinesSendAsync(t *testing.T) {
	sys := newTestSystem(t)
	c, peer := rawPeer(t, sys, framers.NewLengthPrefix())
	defer func() { c.Abort(); <-c.Done() }()
	results := make(chan error, 3)
	done := func(_ *Connection, err error) { results <- err }
	c.Batch(func() {
		c.SendAsync([]byte("1"), nil, done)
		other := make(chan struct{})
		go func() {
			defer close(other)
			c.SendAsync([]byte("2"), nil, done)
		}()
		<-other
		c.SendAsync([]byte("3"), nil, done)
	})
	for range 3 {
		require.NoError(t, <-results)
	}
	require.NoError(t, peer.SetReadDeadline(time.Now().Add(10*time.Second)))
	for _, want := range []string{"1", "2", "3"} {
		got, err := readFrame(peer)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
}
