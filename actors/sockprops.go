package actors

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
)

// This file wires the socket-level properties (RFC 9622 §8.1, the seed's
// rate, soft-error, checksum, ECN, capacity-profile and retransmission
// properties) into the connection actor:
//
//   - maxSendRate: a stacks.Pacer per connection. flush takes at most one
//     burst of queued messages per write and reserves their bytes; when
//     the pacer says wait, the batch is held (the connection counts as
//     writing) and a timer posts pacedFlush to the actor, which never
//     blocks. TCP and TLS also get SO_MAX_PACING_RATE.
//   - maxRecvRate: the reader goroutines wait on a second Pacer after each
//     read, outside their ioCount (a rate wait is not I/O: closing the
//     transport must not wait for it), so data leave the kernel's buffer at
//     the rate and flow control slows the peer.
//   - minSendRate / minRecvRate: a stacks.MinRateWatch per direction fed by
//     a 200 ms tick; a whole interval below the minimum while the
//     application was backlogged is a SoftError carrying *MinRateError.
//   - softErrorNotify: a goroutine of the connection forwards the
//     transport's ICMP errors (stacks.SoftErrorNotifier) to the actor,
//     which emits them as SoftError; the connection stays open.
//   - msgChecksumLen per message: set on the UDP-Lite socket
//     (UDPLITE_SEND_CSCOV) before that datagram and restored after it.
//   - msgCapacityProfile per message: on UDP and UDP-Lite each datagram
//     carries its DSCP in an IP_TOS / IPV6_TCLASS control message; on
//     stream stacks a message asking for another DSCP than the
//     connection's fails with a SendError (profileUnsupported,
//     liveprops.go).
//   - connCapacityProfile Scavenger: TCP and TLS also switch to the "lp"
//     congestion control where the kernel offers it (liveprops.go).
//   - _gotaps.retransmitNotifyThreshold: on TCP and TLS the TCP_INFO
//     retransmission counter is polled every 200 ms; reaching the
//     threshold emits ExcessiveRetransmission. SetProperty of the
//     threshold restarts the watch with it (sockWatchRetransmits).

// sockTickEvery is the period of the min-rate and retransmission polling.
const sockTickEvery = 200 * time.Millisecond

// sockProps is a connection's state for the socket-level properties. It
// belongs to the connection actor, except recv, which its reader goroutine
// reads. It is small: what the properties need beyond the generation and
// two flags lives in x and recv, allocated when a property first asks
// for it (most connections set none of them).
type sockProps struct {
	gen uint64 // counts transports: messages of an older one are ignored
	// kernelPaced: SO_MAX_PACING_RATE was set on this transport (a new
	// socket has none: unlimited needs no system call)
	kernelPaced bool
	dfChecked   bool // noFragmentation: the stream's DF was checked (keepStreamDF)

	x *sockExtra // rates and polling; nil while none was ever active
	// recv is what the reader goroutine applies after each read: nil
	// while maxRecvRate and minRecvRate are both off.
	recv atomic.Pointer[recvLimits]
}

// sockExtra is the state of the rate properties and of the polling.
type sockExtra struct {
	pacer *stacks.Pacer // maxSendRate; nil: unlimited
	held  []writeItem   // a batch reserved on pacer, waiting for its time
	timer *time.Timer   // the pacer's

	recvPacer *stacks.Pacer // maxRecvRate, kept across transports; nil: unlimited

	minSend, minRecv stacks.MinRateWatch
	sent             int          // bytes handed to the socket since the last tick
	recvd            atomic.Int64 // bytes read since the last tick (by the reader)

	rt        stacks.Retransmitter // nil: no retransmission watch
	retrans   stacks.RetransmitWatch
	tick      *time.Timer
	tickArmed bool // a sockTick is scheduled or on its way
}

// recvLimits is what the reader goroutine applies to one transport: the
// maxRecvRate wait (ended by ctx when the transport is dropped) and the
// minRecvRate count. It is replaced, never changed.
type recvLimits struct {
	gen    uint64        // the transport's (sockProps.gen)
	pacer  *stacks.Pacer // nil: no wait
	ctx    context.Context
	cancel context.CancelFunc
	recvd  *atomic.Int64 // nil: not counted
}

// extra returns x, allocating it on first use.
func (s *sockProps) extra() *sockExtra {
	if s.x == nil {
		s.x = &sockExtra{}
	}
	return s.x
}

// connection actor messages of this file
type (
	pacedFlush  struct{ gen uint64 }
	sockTick    struct{ gen uint64 }
	softErrorIn struct {
		gen uint64
		err error
	}
)

// MinRateError is the SoftError raised when a connection moved data slower
// than its minSendRate or minRecvRate over a whole measuring interval (1 s)
// during which the application had more to send, or was waiting to
// receive (RFC 9622 §8.1.7: the rate "cannot be met").
type MinRateError struct {
	// Property is "minSendRate" or "minRecvRate".
	Property string
	// Min is the property's value and Rate the measured rate, in bit/s.
	Min, Rate uint64
	// Interval is the measuring interval.
	Interval time.Duration
}

func (e *MinRateError) Error() string {
	return fmt.Sprintf("%s of %d bit/s could not be met: %d bit/s over the last %v", e.Property, e.Min, e.Rate, e.Interval)
}

// ErrRateNotMet is what every *MinRateError unwraps to.
var ErrRateNotMet = errors.New("minimum rate could not be met")

// Unwrap returns ErrRateNotMet.
func (e *MinRateError) Unwrap() error { return ErrRateNotMet }

// propInt returns the integer value of a connection property; ok is false
// for a Special (Unlimited, Disabled, FullCoverage) or an unset property.
func (c *connActor) propInt(name string) (int64, bool) {
	v := c.spec.cfg.Properties.GetValues()[name]
	if k, ok := v.GetKind().(*messages.PropertyValue_IntValue); ok {
		return k.IntValue, true
	}
	return 0, false
}

// propRate is a rate property in bit/s, 0 for Unlimited.
func (c *connActor) propRate(name string) uint64 {
	if n, ok := c.propInt(name); ok && n > 0 {
		return uint64(n)
	}
	return 0
}

// propPref is a preference property's level (NoPreference when unset).
func (c *connActor) propPref(name string) int8 {
	return int8(c.spec.cfg.Properties.GetValues()[name].GetPreference())
}

// sockStart applies the socket-level properties to a new transport; it
// runs before the reader starts.
func (c *connActor) sockStart(ctx actor.Context) {
	s := &c.sock
	s.stop()
	s.gen++
	s.kernelPaced, s.dfChecked = false, false
	if x := s.x; x != nil {
		x.held, x.sent, x.rt = nil, 0, nil
		x.recvd.Store(0)
	}
	if minSend, minRecv := c.propRate("minSendRate"), c.propRate("minRecvRate"); minSend != 0 || minRecv != 0 || s.x != nil {
		x := s.extra()
		x.minSend = stacks.MinRateWatch{Min: minSend}
		x.minRecv = stacks.MinRateWatch{Min: minRecv}
	}
	c.sockApplyRates()

	root, self, gen := ctx.ActorSystem().Root, ctx.Self(), s.gen
	if n, ok := c.t.(stacks.SoftErrorNotifier); ok {
		if ch := n.SoftErrors(); ch != nil { // nil unless softErrorNotify asked for them
			go func() {
				for {
					c.wg.Add(1) // counted only while blocked (datapath.go)
					err, ok := <-ch
					c.wg.Done()
					if !ok {
						return // the transport was closed
					}
					root.Send(self, &softErrorIn{gen: gen, err: err})
				}
			}()
		}
	}

	c.sockStartCongestion() // connCapacityProfile Scavenger (liveprops.go)
	c.sockWatchRetransmits()
	c.sockArmTick()
}

// sockWatchRetransmits (re)starts the retransmission watch with the
// current _gotaps.retransmitNotifyThreshold, from the transport's present
// count: at the start of a transport and when SetProperty changes the
// threshold. Disabled (or retransmitNotify not asked for) stops it.
func (c *connActor) sockWatchRetransmits() {
	s := &c.sock
	if s.x != nil {
		s.x.rt = nil
	}
	rt, ok := c.t.(stacks.Retransmitter)
	if !ok {
		return
	}
	th, set := c.propInt("_gotaps.retransmitNotifyThreshold")
	if p := c.propPref("_gotaps.retransmitNotify"); set && th > 0 && p >= stacks.Prefer {
		x := s.extra()
		x.rt = rt
		x.retrans = stacks.RetransmitWatch{Threshold: uint32(min(th, 1<<31))}
		if counts, err := rt.Retransmissions(); err == nil {
			x.retrans.Observe(time.Now(), counts) // the baseline
		}
	}
}

// sockApplyRates (re)applies maxSendRate and maxRecvRate: at the start of
// a transport and when SetProperty changes them. Unlimited rates that were
// never set cost nothing: no state, no system call.
func (c *connActor) sockApplyRates() {
	s := &c.sock
	now := time.Now()
	send := c.propRate("maxSendRate")
	switch {
	case send != 0 && (s.x == nil || s.x.pacer == nil):
		s.extra().pacer = stacks.NewPacer(send, 0)
	case send == 0 && s.x != nil:
		s.x.pacer = nil
	case send != 0 && s.x.pacer.Rate() != send:
		s.x.pacer.SetRate(now, send)
	}
	if p, ok := c.t.(stacks.Pacing); ok && c.t != nil && (send != 0 || s.kernelPaced) {
		s.kernelPaced = send != 0
		if err := p.PacingRate(send); err != nil && (send != 0 || !errors.Is(err, stacks.ErrPacingUnsupported)) {
			c.logger().Debug("maxSendRate: no kernel pacing", "error", err.Error())
		}
	}
	recv := c.propRate("maxRecvRate")
	switch {
	case recv != 0 && (s.x == nil || s.x.recvPacer == nil):
		s.extra().recvPacer = stacks.NewPacer(recv, 0)
	case recv == 0 && s.x != nil:
		s.x.recvPacer = nil
	case recv != 0 && s.x.recvPacer.Rate() != recv:
		s.x.recvPacer.SetRate(now, recv)
	}
	c.sockRecvLimits()
}

// sockRecvLimits gives the reader goroutine what it must apply now: the
// maxRecvRate pacer and whether minRecvRate counts the bytes.
func (c *connActor) sockRecvLimits() {
	s := &c.sock
	var pacer *stacks.Pacer
	var recvd *atomic.Int64
	if x := s.x; x != nil {
		pacer = x.recvPacer
		if x.minRecv.Min > 0 {
			recvd = &x.recvd
		}
	}
	old := s.recv.Load()
	switch {
	case pacer == nil && recvd == nil:
		if old != nil {
			s.recv.Store(nil)
			old.cancel()
		}
		return
	case old != nil && old.pacer == pacer && old.recvd == recvd:
		return // the same pacer (its rate may have changed) and counter
	}
	l := &recvLimits{gen: s.gen, pacer: pacer, recvd: recvd}
	if old != nil {
		l.ctx, l.cancel = old.ctx, old.cancel // the same transport: the same end
	} else {
		l.ctx, l.cancel = context.WithCancel(context.Background())
	}
	s.recv.Store(l)
}

// sockPropertySet follows a SetProperty of a socket-level property.
func (c *connActor) sockPropertySet(name string) {
	if c.t == nil {
		return // applied when the transport starts
	}
	switch name {
	case "maxSendRate", "maxRecvRate":
		c.sockApplyRates()
	case "minSendRate":
		c.sock.extra().minSend = stacks.MinRateWatch{Min: c.propRate(name)}
		c.sockArmTick()
	case "minRecvRate":
		c.sock.extra().minRecv = stacks.MinRateWatch{Min: c.propRate(name)}
		c.sockRecvLimits()
		c.sockArmTick()
	case "_gotaps.retransmitNotifyThreshold":
		c.sockWatchRetransmits()
		c.sockArmTick()
	}
}

// stop ends the timers and waits of the current transport.
func (s *sockProps) stop() {
	if l := s.recv.Swap(nil); l != nil {
		l.cancel()
	}
	if x := s.x; x != nil {
		if x.tick != nil {
			x.tick.Stop()
		}
		x.tickArmed = false
		if x.timer != nil {
			x.timer.Stop()
		}
	}
}

// sockStop is called when the connection actor stops.
func (c *connActor) sockStop() { c.sock.stop() }

// recvPace is the reader goroutine's maxRecvRate wait, to call after
// reading n bytes, outside its ioCount (see the file comment); it also
// counts the bytes for minRecvRate. Make it on the actor when the reader
// starts; the wait ends early when the transport is dropped.
type recvPace struct {
	s   *sockProps
	gen uint64
}

func (c *connActor) recvPace() recvPace { return recvPace{&c.sock, c.sock.gen} }

func (p recvPace) wait(n int) {
	l := p.s.recv.Load()
	if n <= 0 || l == nil || l.gen != p.gen {
		return // nothing to apply, or the limits of a later transport
	}
	if l.recvd != nil {
		l.recvd.Add(int64(n))
	}
	if l.pacer != nil {
		_ = l.pacer.Wait(l.ctx, n)
	}
}

func itemBytes(w writeItem) int {
	n := 0
	for _, b := range w.bufs {
		n += len(b)
	}
	return n
}

// paceBatch applies maxSendRate to a batch about to be written: it keeps
// at most one burst of whole items (at least one; the rest goes back to
// the queue, in order) and reserves their bytes on the pacer. It returns
// the items to write now, or held = true when they must wait: then the
// connection counts as writing until pacedFlush writes them.
func (c *connActor) paceBatch(ctx actor.Context, batch []writeItem) (now []writeItem, held bool) {
	s := &c.sock
	if !c.datagram && !s.dfChecked {
		c.keepStreamDF(batch)
	}
	x := s.x
	if x == nil || x.pacer == nil {
		if x != nil && x.minSend.Min > 0 { // counted for minSendRate only
			for _, w := range batch {
				x.sent += itemBytes(w)
			}
		}
		return batch, false
	}
	p := x.pacer
	chunk := max(p.Burst(), 16<<10)
	n, i := 0, 0
	for ; i < len(batch) && (i == 0 || n < chunk); i++ {
		n += itemBytes(batch[i])
	}
	if i < len(batch) {
		rest := batch[i:len(batch):len(batch)]
		if len(c.wqRest) > 0 { // a turn of a shared session: keep the order releaseGrant restores
			c.wqRest = append(rest, c.wqRest...)
		} else {
			c.wq = append(rest, c.wq...)
		}
		batch = batch[:i:i]
	}
	x.sent += n
	d := p.Reserve(time.Now(), n)
	if d <= 0 {
		return batch, false
	}
	x.held = batch
	c.writing = true
	gen, root, self := s.gen, ctx.ActorSystem().Root, ctx.Self()
	x.timer = time.AfterFunc(d, func() { root.Send(self, &pacedFlush{gen: gen}) })
	return nil, true
}

// pacedFlushed writes the batch the pacer held.
func (c *connActor) pacedFlushed(ctx actor.Context, m *pacedFlush) {
	s := &c.sock
	if m.gen != s.gen || s.x == nil || s.x.held == nil {
		return
	}
	batch := s.x.held
	s.x.held = nil
	c.writing = false
	if c.t == nil {
		return // the transport was dropped; its sends have failed
	}
	if c.datagram || c.connectionless { // UDP with framers too, as flush: one datagram per framed message
		// whole messages: those whose msgLifetime passed while the pacer
		// held them are Expired, not sent late
		c.writeDatagrams(ctx, c.dropExpired(batch))
	} else {
		c.writeStream(ctx, batch)
	}
}

// connDSCP is the DSCP the socket has now: connCapacityProfile's, which
// SetProperty may have changed since the transport started (applyLive).
func (c *connActor) connDSCP() uint8 {
	if v, ok := c.spec.cfg.Properties.GetValues()["connCapacityProfile"].GetKind().(*messages.PropertyValue_EnumValue); ok {
		if d, ok := stacks.CapacityProfileDSCP(v.EnumValue); ok {
			return d
		}
	}
	return c.spec.cfg.StackOptions.DSCP
}

// msgDSCP is the DSCP a message asks for with msgCapacityProfile; own is
// false when the message follows the connection's connCapacityProfile
// (DSCPSet is set only for a profile given explicitly, on the
// message or as the Preconnection's message default).
func (c *connActor) msgDSCP(p *messages.MessageProps) (dscp uint8, own bool) {
	if p == nil || !p.DSCPSet {
		return 0, false
	}
	return p.DSCP, true
}

// checksumCoverage maps msgChecksumLen (-1 full coverage) to the stacks'
// convention (0 full, negative header only).
func checksumCoverage(n int64) int {
	switch {
	case n < 0:
		return 0
	case n == 0:
		return -1
	}
	return int(n)
}

// datagramOut is how one datagram is written: its per-message TOS byte and
// checksum coverage, when they differ from the connection's.
type datagramOut struct {
	tos    uint8
	hasTOS bool
	cov    int
	hasCov bool
	noFrag bool // noFragmentation: sent with stacks.NoFragDatagrams
}

func (c *connActor) datagramOut(w writeItem, connDSCP uint8) datagramOut {
	var o datagramOut
	if w.send == nil || w.send.msg.Props == nil {
		return o
	}
	p, opts := w.send.msg.Props, &c.spec.cfg.StackOptions
	if d, own := c.msgDSCP(p); own && d != connDSCP {
		o.tos, o.hasTOS = stacks.TOS(d, stacks.NotECT), true
	}
	if cov := checksumCoverage(p.ChecksumLen); cov != opts.SendChecksumLen {
		o.cov, o.hasCov = cov, true
	}
	o.noFrag = p.NoFragmentation || p.NoSegmentation // one packet: never fragmented either
	return o
}

// writeDatagrams writes each message of batch as one datagram, in a writer
// goroutine, with its own DSCP and checksum coverage when it has them.
// A noFragmentation message goes out without network-layer fragmentation
// (stacks.NoFragDatagrams, the UDP and UDP-Lite transports: DF on IPv4);
// one larger than the path MTU, or on a system that cannot forbid
// fragmentation, is not sent and gets its own SendError
// (refusedDatagrams) while the rest of the batch is written. The socket's
// don't-fragment state is switched only when it changes from one message
// to the next: messages without the property cost no system call unless
// the one before them had it.
func (c *connActor) writeDatagrams(ctx actor.Context, batch []writeItem) {
	c.writing = true
	t := c.t
	outs := make([]datagramOut, len(batch))
	dscp := c.connDSCP()
	for i, w := range batch {
		outs[i] = c.datagramOut(w, dscp)
	}
	connCov := c.spec.cfg.StackOptions.SendChecksumLen
	tw, _ := t.(stacks.TOSDatagrams)
	cc, _ := t.(stacks.ChecksumCoverage)
	nf, _ := t.(stacks.NoFragDatagrams)
	sendMax := c.sendMax
	root, self, gen := ctx.ActorSystem().Root, ctx.Self(), fromTransport{c.tgen}
	go func() {
		total := 0
		var err error
		var refused *refusedDatagrams
		// off: where the next item starts in the batch's bytes; written:
		// where the failing one starts (the datagrams before it went out:
		// wroteBatch reports them Sent)
		off, written := 0, 0
		for i, w := range batch {
			if w.send == nil && len(w.bufs) == 0 {
				continue // a framer's own bytes (send nil) are a datagram too
			}
			d := concat(w.bufs)
			start := off
			off += len(d)
			if w.send != nil && sendMax > 0 && len(d) > sendMax {
				// a framed message above the largest datagram (known only
				// once framed): this message only, the connection goes on
				if refused == nil {
					refused = &refusedDatagrams{writeDone: writeDone{fromTransport: gen}}
				}
				refused.items = append(refused.items, w)
				refused.errs = append(refused.errs, &framers.TooLargeError{Size: uint64(len(d)), Max: uint64(sendMax)})
				batch[i].send = nil
				continue
			}
			total += len(d)
			o := outs[i]
			if o.hasCov && cc != nil {
				_ = cc.SetSendChecksumLen(o.cov)
			}
			c.wg.Add(1) // counted only while blocked in I/O (datapath.go)
			if nf != nil && o.noFrag {
				_, err = nf.WriteNoFrag(d, o.tos, o.hasTOS)
			} else {
				if nf != nil {
					err = nf.AllowFragmentation() // no system call unless the last datagram had DF
				}
				if err == nil && o.hasTOS && tw != nil {
					_, err = tw.WriteMsg(d, o.tos)
				} else if err == nil {
					_, err = t.Write(d)
				}
			}
			c.wg.Done()
			if o.hasCov && cc != nil {
				_ = cc.SetSendChecksumLen(connCov)
			}
			if err != nil && o.noFrag && (errors.Is(err, stacks.ErrFragmentationNeeded) || errors.Is(err, errors.ErrUnsupported)) {
				// this message only: the connection goes on
				if refused == nil {
					refused = &refusedDatagrams{writeDone: writeDone{fromTransport: gen}}
				}
				refused.items = append(refused.items, w)
				refused.errs = append(refused.errs, err)
				batch[i].send = nil
				err = nil
				continue
			}
			if err != nil {
				written = start
				break
			}
		}
		if refused != nil {
			refused.batch, refused.err, refused.written = batch, err, written
			root.Send(self, refused)
			return
		}
		root.Send(self, &writeDone{fromTransport: gen, batch: batch, err: err, written: written})
	}()
}

// refusedDatagrams is a writeDone whose batch lost the items the stack
// refused one by one (a noFragmentation datagram above the path MTU):
// each gets its SendError, the rest of the batch is reported as usual.
type refusedDatagrams struct {
	writeDone
	items []writeItem
	errs  []error
}

// datagramsRefused reports the SendErrors of refused datagrams, then the
// rest of their batch.
func (c *connActor) datagramsRefused(ctx actor.Context, m *refusedDatagrams) {
	for i, w := range m.items {
		c.inFlight--
		if c.sys.Tracing() {
			c.sys.trace(&messages.TraceRecord{Kind: "send_error", Event: "SendError", ConnectionId: c.spec.id, GroupId: c.spec.groupID,
				MessageId: w.send.msg.SendID, Error: m.errs[i].Error()})
		}
		c.link.sendDone([]uint64{w.send.msg.SendID}, w.send.bytes, m.errs[i])
	}
	// the refused items' buffers are the batch's (counted in written's
	// offsets): recycled only once wroteBatch has walked the batch
	c.wroteBatch(ctx, m.batch, m.err, m.written)
	recycleSends(m.items)
}

// keepStreamDF honours noFragmentation on a byte stream: the transport
// segments to the path MTU, and the TCP socket sets DF unless path MTU
// discovery was turned off (stacks.KeepStreamDF turns it back on). It
// runs once per transport, for the first batch with such a message.
func (c *connActor) keepStreamDF(batch []writeItem) {
	for _, w := range batch {
		if w.send == nil || w.send.msg.Props == nil || !w.send.msg.Props.NoFragmentation {
			continue
		}
		c.sock.dfChecked = true
		if err := stacks.KeepStreamDF(c.t); err != nil && !errors.Is(err, stacks.ErrNotApplicable) {
			c.logger().Debug("noFragmentation: could not keep DF on the stream", "stack", c.stack, "error", err)
		}
		return
	}
}

// sockArmTick schedules the next min-rate / retransmission poll, when any
// of them is active and none is scheduled.
func (c *connActor) sockArmTick() {
	x := c.sock.x
	if x == nil || x.tickArmed || c.t == nil || (x.minSend.Min == 0 && x.minRecv.Min == 0 && x.rt == nil) {
		return
	}
	x.tickArmed = true
	gen, root, self := c.sock.gen, c.sys.AS.Root, c.spec.self
	x.tick = time.AfterFunc(sockTickEvery, func() { root.Send(self, &sockTick{gen: gen}) })
}

// sockTicked polls the rates and the retransmission counters.
func (c *connActor) sockTicked(m *sockTick) {
	x := c.sock.x
	if m.gen != c.sock.gen || x == nil {
		return
	}
	x.tickArmed = false
	if c.t == nil || (c.state != Established && c.state != Closing) {
		return
	}
	now := time.Now()
	if x.minSend.Min > 0 {
		backlogged := c.writing || len(c.wq) > 0 || len(c.wqRest) > 0
		if rate, ended, below := x.minSend.Observe(now, x.sent, backlogged); ended && below {
			c.rateNotMet("minSendRate", x.minSend, rate)
		}
	}
	x.sent = 0
	if x.minRecv.Min > 0 {
		if rate, ended, below := x.minRecv.Observe(now, int(x.recvd.Swap(0)), c.link.receiveWaiting()); ended && below {
			c.rateNotMet("minRecvRate", x.minRecv, rate)
		}
	}
	if x.rt != nil {
		if counts, err := x.rt.Retransmissions(); err == nil {
			if ev, ok := x.retrans.Observe(now, counts); ok {
				if c.sys.Tracing() { // before the event: a trace never lags what the application saw
					c.sys.trace(&messages.TraceRecord{Kind: "retransmit", Event: "ExcessiveRetransmission", ConnectionId: c.spec.id,
						GroupId: c.spec.groupID, Bytes: int64(ev.Count), Stack: c.stack})
				}
				c.link.emitExcessiveRetransmission(int(ev.Count))
			}
		}
	}
	c.sockArmTick()
}

func (c *connActor) rateNotMet(prop string, w stacks.MinRateWatch, rate uint64) {
	iv := w.Interval
	if iv <= 0 {
		iv = time.Second
	}
	err := &MinRateError{Property: prop, Min: w.Min, Rate: rate, Interval: iv}
	c.logger().Debug("soft error", "error", err.Error())
	if c.sys.Tracing() { // a SoftError event like an ICMP error's (softErrorArrived)
		c.sys.trace(&messages.TraceRecord{Kind: "soft_error", Event: "SoftError", ConnectionId: c.spec.id, GroupId: c.spec.groupID, Error: err.Error()})
	}
	c.link.emitSoftError(err)
}

// softErrorArrived emits an ICMP error of the current transport as a
// SoftError (RFC 9622 §8.3.2); the connection stays as it is.
func (c *connActor) softErrorArrived(m *softErrorIn) {
	if m.gen != c.sock.gen || (c.state != Established && c.state != Closing) {
		return
	}
	if c.sys.Tracing() {
		c.sys.trace(&messages.TraceRecord{Kind: "soft_error", Event: "SoftError", ConnectionId: c.spec.id, GroupId: c.spec.groupID, Error: m.err.Error()})
	}
	c.link.emitSoftError(m.err)
}

// sockReceive handles this file's messages; it reports whether m was one.
func (c *connActor) sockReceive(ctx actor.Context, m any) bool {
	switch m := m.(type) {
	case *pacedFlush:
		c.pacedFlushed(ctx, m)
	case *sockTick:
		c.sockTicked(m)
	case *softErrorIn:
		c.softErrorArrived(m)
	case *refusedDatagrams:
		c.datagramsRefused(ctx, m)
	default:
		return false
	}
	return true
}

// receiveWaiting reports whether the application waits for received data
// (a Receive is pending): a slow receive is then the path's fault.
func (l *Link) receiveWaiting() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.reqs) > 0
}
