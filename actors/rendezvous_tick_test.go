package actors

import (
	"net"
	"net/netip"
	"testing"

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
