package actors

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/stacks"
	"github.com/stretchr/testify/require"
)

// rvTestCtx is the little of actor.Context the UDP check code uses: a
// message to handle, the system and the actor's PID (a recorder).
type rvTestCtx struct {
	actor.Context
	as   *actor.ActorSystem
	self *actor.PID
	msg  any
}

func (c *rvTestCtx) ActorSystem() *actor.ActorSystem { return c.as }
func (c *rvTestCtx) Self() *actor.PID                { return c.self }
func (c *rvTestCtx) Message() any                    { return c.msg }

// TestRendezvousStaleCheckTickAfterNomination: the retransmission tick of
// a check (its timer fired, the tick queued) that comes after the check
// succeeded and this side started nominating the pair must not send the
// nomination again nor arm a second timer (the one the nomination armed
// would then be lost: stopChecks could no longer stop it, and it would
// fire after the rendezvous ended).
func TestRendezvousStaleCheckTickAfterNomination(t *testing.T) {
	sys := NewSystem(Config{})
	defer shutdown(t, sys)
	ticks := make(chan *rvCheckTick, 16)
	rec := sys.AS.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if m, ok := c.Message().(*rvCheckTick); ok {
			ticks <- m
		}
	}))
	defer func() { _ = sys.AS.Root.StopFuture(rec).Wait() }()

	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer sock.Close()
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer peer.Close()
	local, peerAP := sock.LocalAddr().(*net.UDPAddr).AddrPort(), peer.LocalAddr().(*net.UDPAddr).AddrPort()

	r := &rendezvousActor{sys: sys, stack: stacks.UDP(), tie: 10, attempts: map[rvPairKey]*AttemptError{},
		checks: map[rvPairKey]*rvCheck{}, early: map[rvPairKey][][]byte{},
		socks: []*rvSocket{{idx: 0, local: local, udp: sock, remotes: []netip.AddrPort{peerAP}}}}
	ctx := &rvTestCtx{as: sys.AS, self: rec}
	pair := rvPairKey{local, peerAP}
	c := &rvCheck{sock: 0, tx: stacks.NewSTUNTransactionID()}
	r.checks[pair] = c
	r.sendCheck(pair, c)
	r.armCheck(ctx, pair, c, 1)
	defer r.stopChecks()
	stale := <-ticks // the check's timer fired: its tick is on its way

	// the peer (a smaller tie-breaker) answers first: this side nominates
	ctx.msg = &rvDatagram{sock: 0, from: peerAP, b: encodeCheckAnswer(c.tx, local, 5)}
	r.Receive(ctx)
	require.True(t, c.nominating)
	require.Equal(t, 1, c.sent, "one nomination sent")
	armed := c.timer

	// then the check's tick
	ctx.msg = stale
	r.Receive(ctx)
	require.Equal(t, 1, c.sent, "the check's tick sent the nomination again")
	require.Same(t, armed, c.timer, "the check's tick armed a second timer; the nomination's is lost")
}

// TestRendezvousNominationFailsOver: the controlling side's nomination of
// the first pair whose check succeeded goes unanswered (the pair broke
// after its check); after rendezvousNominationMax requests the pair is
// given up and the next pair whose check succeeded is nominated, rather
// than the first being nominated until the rendezvous times out.
func TestRendezvousNominationFailsOver(t *testing.T) {
	sys := NewSystem(Config{})
	defer shutdown(t, sys)
	rec := sys.AS.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {}))
	defer func() { _ = sys.AS.Root.StopFuture(rec).Wait() }()

	sock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer sock.Close()
	var peers []*net.UDPConn
	var remotes []netip.AddrPort
	for range 2 {
		p, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		defer p.Close()
		peers = append(peers, p)
		remotes = append(remotes, p.LocalAddr().(*net.UDPAddr).AddrPort())
	}
	local := sock.LocalAddr().(*net.UDPAddr).AddrPort()
	r := &rendezvousActor{sys: sys, stack: stacks.UDP(), tie: 10, attempts: map[rvPairKey]*AttemptError{},
		checks: map[rvPairKey]*rvCheck{}, early: map[rvPairKey][][]byte{},
		socks: []*rvSocket{{idx: 0, local: local, udp: sock, remotes: remotes}}}
	ctx := &rvTestCtx{as: sys.AS, self: rec}
	defer r.stopChecks()
	pairs := []rvPairKey{{local, remotes[0]}, {local, remotes[1]}}
	for _, p := range pairs {
		c := &rvCheck{sock: 0, tx: stacks.NewSTUNTransactionID()}
		r.checks[p] = c
		r.sendCheck(p, c)
	}
	// both checks succeed (the peer has the smaller tie-breaker): the
	// first pair is nominated, the second waits
	for i, p := range pairs {
		ctx.msg = &rvDatagram{sock: 0, from: p.Remote, b: encodeCheckAnswer(r.checks[p].tx, local, 5)}
		r.Receive(ctx)
		require.Equal(t, i == 0, r.checks[p].nominating)
	}
	first, second := r.checks[pairs[0]], r.checks[pairs[1]]
	// the first nomination is never answered
	for n := 1; first.nominating; n++ {
		require.LessOrEqual(t, n, rendezvousNominationMax, "the nomination is retransmitted for ever")
		ctx.msg = &rvCheckTick{pair: pairs[0], n: n, nom: true}
		r.Receive(ctx)
	}
	require.Equal(t, rendezvousNominationMax, first.sent)
	require.True(t, first.failed)
	require.True(t, second.nominating, "the next valid pair is nominated")
	require.True(t, r.nominating)

	// the second peer gets that nomination (after its check request)
	buf := make([]byte, 1500)
	require.NoError(t, peers[1].SetReadDeadline(time.Now().Add(5*time.Second)))
	for {
		n, err := peers[1].Read(buf)
		require.NoError(t, err)
		if ice, ok := stacks.DecodeSTUNICE(buf[:n]); ok && ice.UseCandidate {
			require.Equal(t, uint64(10), ice.TieBreaker)
			break
		}
	}
	// and once it answers, the second pair is selected
	ctx.msg = &rvDatagram{sock: 0, from: pairs[1].Remote, b: encodeCheckAnswer(second.ntx, local, 5)}
	r.Receive(ctx)
	require.Equal(t, pairs[1], r.winner)
}

// TestRendezvousYieldKeepsTheAcceptedOutcome: on one pair, the peer's
// connect reached this side's listener and its TLS handshake failed (this
// side, the server, has no identity); this side's own connect then found
// the 4-tuple taken (EADDRNOTAVAIL, a yield). The attempt keeps the
// handshake's reason, in either order, not the yield's bare errno.
func TestRendezvousYieldKeepsTheAcceptedOutcome(t *testing.T) {
	sys := NewSystem(Config{})
	defer shutdown(t, sys)
	pair := rvPairKey{netip.MustParseAddrPort("127.0.0.1:1000"), netip.MustParseAddrPort("127.0.0.1:2000")}
	handshake := errors.New("the TLS server role needs a local identity")
	yield := &rvAttemptEnded{pair: pair, err: syscall.EADDRNOTAVAIL, yielded: true}
	failed := &rvAttemptEnded{pair: pair, err: handshake}
	for name, order := range map[string][]any{"yield last": {failed, yield}, "yield first": {yield, failed}} {
		t.Run(name, func(t *testing.T) {
			r := &rendezvousActor{sys: sys, stack: stacks.TCP(), attempts: map[rvPairKey]*AttemptError{}}
			ctx := &rvTestCtx{as: sys.AS}
			for _, m := range order {
				ctx.msg = m
				r.Receive(ctx)
			}
			list := r.attemptList()
			require.Len(t, list, 1)
			require.ErrorIs(t, list[0].Err, handshake)
		})
	}
}
