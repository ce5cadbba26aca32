package taps

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/gotaps/gotaps/messages"
)

// MessageContext carries the Message Properties of one Message, or of
// several Messages sent with the same context, plus the framer metadata
// (RFC 9622 §9.1.1). On the receive side it also reports metadata of the
// received Message: ECN, early data and the final flag.
//
// Properties not set on the context take the defaults of the Connection
// (which start as the default Message Properties of its
// TransportProperties). Changing a context after it was passed to Send has
// no effect on that Send: Send takes a snapshot.
//
// A MessageContext is safe for concurrent use by several goroutines. The
// zero value is an empty context, like [NewMessageContext]; a
// MessageContext must not be copied after first use.
type MessageContext struct {
	mu     sync.Mutex
	values map[Property]any  // explicitly set Message Properties, canonical form
	errs   *[]*PropertyError // invalid values given to the fluent setters, oldest first (nil: none)
	framer map[any]framers.Metadata

	// receive side
	conn          *Connection // the Connection a received Message came on
	ecn           uint8
	hasECN        bool
	earlyData     bool
	receivedFinal bool
}

// reset empties a received Message's context for reuse (Message.Release):
// nothing else holds it.
func (mc *MessageContext) reset() {
	mc.values, mc.errs, mc.framer, mc.conn = nil, nil, nil, nil
	mc.ecn, mc.hasECN, mc.earlyData, mc.receivedFinal = 0, false, false, false
}

// NewMessageContext returns an empty MessageContext: every Message Property
// takes the Connection's default.
func NewMessageContext() *MessageContext { return &MessageContext{} }

// record sets p to v for the fluent setters: an invalid value is kept for
// Err and leaves the previous value in place.
func (mc *MessageContext) record(p Property, v any) *MessageContext {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if err := mc.setLocked(p, v); err != nil {
		pe, _ := err.(*PropertyError)
		mc.dropErrLocked(p)
		if mc.errs == nil {
			mc.errs = new([]*PropertyError)
		}
		*mc.errs = append(*mc.errs, pe)
	}
	return mc
}

func (mc *MessageContext) dropErrLocked(p Property) {
	if mc.errs != nil {
		*mc.errs = slices.DeleteFunc(*mc.errs, func(e *PropertyError) bool { return e.Property == p })
	}
}

func (mc *MessageContext) setLocked(p Property, v any) error {
	d, err := lookupDesc("set", p)
	if err != nil {
		return err
	}
	if d.kind != KindMessage {
		return &PropertyError{Op: "set", Property: d.name, Value: v,
			Err: fmt.Errorf("%w: %s is a %s property, not a Message Property", ErrInvalidPropertyType, d.name, d.kind)}
	}
	cv, err := d.check("set", v)
	if err != nil {
		return err
	}
	if mc.values == nil {
		mc.values = make(map[Property]any)
	}
	mc.values[d.name] = cv
	mc.dropErrLocked(d.name)
	return nil
}

// Lifetime sets msgLifetime: after d the Message need not be sent
// (Expired). d must be > 0; for Infinite use Set(MsgLifetime, Infinite).
// Default: the Connection's msgLifetime (Infinite unless its
// TransportProperties set it).
func (mc *MessageContext) Lifetime(d time.Duration) *MessageContext { return mc.record(MsgLifetime, d) }

// Priority sets msgPriority (>= 0; lower is more important). Default: the
// Connection's msgPriority (100 unless its TransportProperties set it). It
// moves a Message ahead of others waiting to be sent only when its
// msgOrdered is false (see [MessageContext.Ordered]): Messages with
// msgOrdered true keep the order they were sent in.
func (mc *MessageContext) Priority(p int) *MessageContext { return mc.record(MsgPriority, p) }

// Ordered sets msgOrdered (default: the Connection's preserveOrder). The
// Messages sent with it true arrive in the order they were sent (RFC 9622
// §9.1.3.3), whatever their msgPriority; one sent with it false may go
// ahead of them by its priority.
func (mc *MessageContext) Ordered(b bool) *MessageContext { return mc.record(MsgOrdered, b) }

// SafelyReplayable sets safelyReplayable (the seed's "idempotent"): the
// Message may be delivered more than once, which 0-RTT and UDP need.
// Default: the Connection's safelyReplayable (false unless its
// TransportProperties set it; true under the UnreliableDatagram profile).
func (mc *MessageContext) SafelyReplayable(b bool) *MessageContext {
	return mc.record(SafelyReplayable, b)
}

// Final sets final: this is the last Message of the Connection. Default:
// the Connection's final (false unless its TransportProperties set it).
func (mc *MessageContext) Final(b bool) *MessageContext { return mc.record(Final, b) }

// ChecksumLen sets msgChecksumLen to n bytes (>= 0). Default: the
// Connection's msgChecksumLen (FullCoverage unless its TransportProperties
// set it).
func (mc *MessageContext) ChecksumLen(n int) *MessageContext { return mc.record(MsgChecksumLen, n) }

// FullChecksum sets msgChecksumLen to FullCoverage.
func (mc *MessageContext) FullChecksum() *MessageContext {
	return mc.record(MsgChecksumLen, FullCoverage)
}

// Reliable sets msgReliable (default: the Connection's reliability).
func (mc *MessageContext) Reliable(b bool) *MessageContext { return mc.record(MsgReliable, b) }

// CapacityProfile sets msgCapacityProfile (default: the Connection's
// connCapacityProfile).
func (mc *MessageContext) CapacityProfile(c CapacityProfile) *MessageContext {
	return mc.record(MsgCapacityProfile, c)
}

// NoFragmentation sets noFragmentation (default: the Connection's
// noFragmentation, false unless its TransportProperties set it): the
// message is sent without network-layer fragmentation. On UDP and UDP-Lite
// it leaves with DF set (IPv4) or unfragmented (IPv6), and a message
// larger than the path MTU gets a SendError wrapping
// [stacks.ErrFragmentationNeeded] instead; TCP and TLS segment at the
// transport and keep DF on (path MTU discovery is switched back on if it
// was off); QUIC always sets DF itself. See [NoFragmentation].
func (mc *MessageContext) NoFragmentation(b bool) *MessageContext {
	return mc.record(NoFragmentation, b)
}

// NoSegmentation sets noSegmentation. Default: the Connection's
// noSegmentation (false unless its TransportProperties set it).
func (mc *MessageContext) NoSegmentation(b bool) *MessageContext {
	return mc.record(NoSegmentation, b)
}

// Err returns the error of the oldest invalid value given to a fluent
// setter (Lifetime, Priority, ...) that was not since replaced by a valid
// value of the same property, as a [*PropertyError]; nil if there is none.
// Send fails with this error.
func (mc *MessageContext) Err() error {
	if mc == nil {
		return nil
	}
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if mc.errs == nil || len(*mc.errs) == 0 {
		return nil
	}
	return (*mc.errs)[0]
}

// RemoteEndpoint returns the Remote Endpoint a received Message came from
// (RFC 9622 §9.1.1 GetRemoteEndpoint): that of the Connection it was
// received on, which for UDP (one Connection per peer) is the datagram's
// sender. It is read from the Connection when called, so after a QUIC
// migration it is the peer's new address. ok is false for a context the
// application made and once the Connection has ended. It
// waits for the Connection's actor, at most 5 s.
func (mc *MessageContext) RemoteEndpoint() (*RemoteEndpoint, bool) {
	info, ok := mc.connInfo()
	if !ok || info.Remote == nil {
		return nil, false
	}
	return remoteFromMessage(info.Remote), true
}

// LocalEndpoint returns the Local Endpoint a received Message arrived at
// (RFC 9622 §9.1.1 GetLocalEndpoint), read from its Connection when
// called as RemoteEndpoint is.
func (mc *MessageContext) LocalEndpoint() (*LocalEndpoint, bool) {
	info, ok := mc.connInfo()
	if !ok || info.Local == nil {
		return nil, false
	}
	return localFromMessage(info.Local), true
}

// connInfo asks the Connection a received Message came on for its info.
func (mc *MessageContext) connInfo() (*messages.ConnectionInfo, bool) {
	if mc == nil {
		return nil, false
	}
	mc.mu.Lock()
	c := mc.conn
	mc.mu.Unlock()
	if c == nil {
		return nil, false
	}
	select {
	case <-c.Done(): // ended: its actor may still answer until it stops
		return nil, false
	default:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := callConn[*messages.ConnectionInfo](ctx, c, &messages.GetConnectionInfo{})
	return info, err == nil
}

// Set sets the Message Property p to v, with the same types and ranges as
// [TransportProperties.Set]. Other properties give a [*PropertyError]
// wrapping [ErrInvalidPropertyType] (ErrUnknownProperty for unknown names).
// Unlike the fluent setters, an error is returned, not recorded.
func (mc *MessageContext) Set(p Property, v any) error {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	return mc.setLocked(p, v)
}

// Get returns the value of p set on this context; ok is false when it is
// not set (the Message then uses the Connection's default) or p is not a
// Message Property. Integers are returned as int64.
func (mc *MessageContext) Get(p Property) (any, bool) {
	if mc == nil {
		return nil, false
	}
	d := descOf(p)
	if d == nil {
		return nil, false
	}
	mc.mu.Lock()
	defer mc.mu.Unlock()
	v, ok := mc.values[d.name]
	return v, ok
}

// IsSet reports whether p is set on this context.
func (mc *MessageContext) IsSet(p Property) bool {
	_, ok := mc.Get(p)
	return ok
}

// framerKey returns the namespace key of a framer: the framer value itself
// when it is comparable (framers are usually pointers), else its type name.
func framerKey(f framers.Framer) any {
	if f == nil {
		return nil
	}
	if reflect.ValueOf(f).Comparable() {
		return f
	}
	return framerTypeKey(fmt.Sprintf("%T", f))
}

// framerTypeKey is the namespace key of a framer that is not comparable.
type framerTypeKey string

// SetFramerMetadata sets key to v in the metadata namespace of framer f
// (RFC 9622 §9.1.2.2): f sees it in NewSentMessage; other framers do not.
// The namespace is the framer value given to AddFramer.
func (mc *MessageContext) SetFramerMetadata(f framers.Framer, key string, v any) *MessageContext {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	k := framerKey(f)
	if mc.framer == nil {
		mc.framer = make(map[any]framers.Metadata)
	}
	md := mc.framer[k]
	if md == nil {
		md = make(framers.Metadata)
		mc.framer[k] = md
	}
	md[key] = v
	return mc
}

// FramerMetadata returns a copy of framer f's metadata namespace (on the
// receive side: what f attached to the Message), nil when empty.
func (mc *MessageContext) FramerMetadata(f framers.Framer) framers.Metadata {
	if mc == nil {
		return nil
	}
	mc.mu.Lock()
	defer mc.mu.Unlock()
	return maps.Clone(mc.framer[framerKey(f)])
}

// setFramerMetadata replaces framer f's namespace with a copy of md (the
// receive path: the metadata a framer delivered with a Message).
func (mc *MessageContext) setFramerMetadata(f framers.Framer, md framers.Metadata) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	k := framerKey(f)
	if len(md) == 0 {
		delete(mc.framer, k)
		return
	}
	if mc.framer == nil {
		mc.framer = make(map[any]framers.Metadata)
	}
	mc.framer[k] = maps.Clone(md)
}

// ECN returns the ECN codepoint (0-3) of a received Message; ok is false
// when the protocol does not report it (only UDP and UDP-Lite do).
func (mc *MessageContext) ECN() (ecn uint8, ok bool) {
	if mc == nil {
		return 0, false
	}
	mc.mu.Lock()
	defer mc.mu.Unlock()
	return mc.ecn, mc.hasECN
}

// EarlyData reports whether a received Message arrived as 0-RTT early data
// (RFC 9622 §9.3.2.2), and may therefore be a replay. On QUIC it is true
// when every byte of the Message was read before the handshake completed:
// only 0-RTT packets can be read then, so true is always right; a 0-RTT
// Message read after the handshake completed (it arrived in time but was
// received later) reports false. On TCP and TLS it is always false:
// crypto/tls accepts no 0-RTT data on the server side. A Message a
// connection received as 0-RTT was sent marked safelyReplayable by its
// peer.
func (mc *MessageContext) EarlyData() bool {
	if mc == nil {
		return false
	}
	mc.mu.Lock()
	defer mc.mu.Unlock()
	return mc.earlyData
}

// IsFinal reports whether a received Message was marked final by the peer:
// it is the last one on this Connection. Applications should not rely on
// it (not every protocol conveys it): gotaps sets it when it has the
// peer's clean end of stream as it delivers the Message, or had it when
// the Message was taken. A byte stream's Message (no framer) ends only
// there. A framed Message is final when its framer delivered it at the end
// of the stream (an unterminated last line), when one read returned its
// bytes together with the end (TLS 1.2: close_notify in the same read as
// the data; QUIC: the stream's FIN read with the data), or when the end
// had been read before the Message was taken; whether a Receive or
// ReceiveAsync waited for it or not. On plain TCP and Unix sockets a read
// returns the data and only the next one the FIN (gotaps does not look for
// it behind the data: a system call more on every read that empties the
// socket), so the last Message a delimiter or length prefix completes is
// usually not marked, nor over TLS 1.3 (the close_notify record is read by
// the next read): the next receive's *ReceiveError unwrapping to ErrClosed
// tells that the stream ended. Never after a failure (a reset, a truncated
// TLS stream) nor under a re-establishment policy.
func (mc *MessageContext) IsFinal() bool {
	if mc == nil {
		return false
	}
	mc.mu.Lock()
	defer mc.mu.Unlock()
	return mc.receivedFinal
}

func (mc *MessageContext) setECN(ecn uint8) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	mc.ecn, mc.hasECN = ecn&3, true
}

func (mc *MessageContext) setEarlyData(b bool) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	mc.earlyData = b
}

func (mc *MessageContext) setReceivedFinal(b bool) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	mc.receivedFinal = b
}

// snapshot returns a deep copy that can be handed to another goroutine:
// later changes to mc do not show in it. Framer metadata maps are copied;
// the values in them are shared. A nil mc gives an empty context.
func (mc *MessageContext) snapshot() *MessageContext {
	c := &MessageContext{}
	if mc == nil {
		return c
	}
	mc.mu.Lock()
	defer mc.mu.Unlock()
	c.values = maps.Clone(mc.values)
	if mc.errs != nil {
		errs := slices.Clone(*mc.errs)
		c.errs = &errs
	}
	if mc.framer != nil {
		c.framer = make(map[any]framers.Metadata, len(mc.framer))
		for k, md := range mc.framer {
			c.framer[k] = maps.Clone(md)
		}
	}
	c.ecn, c.hasECN = mc.ecn, mc.hasECN
	c.earlyData = mc.earlyData
	c.receivedFinal = mc.receivedFinal
	return c
}

// resolve returns the effective Message Properties of a Message sent with
// mc on a Connection whose properties are defaults: a value set on mc wins,
// then a value set on defaults, then the RFC default. msgCapacityProfile
// falls back to defaults' connCapacityProfile. msgOrdered and msgReliable
// are left out unless set on mc or defaults: absent means "as the
// Connection reads back preserveOrder / reliability". The error is Err(): a
// Send with an invalid context fails with it. mc may be nil.
func (mc *MessageContext) resolve(defaults *TransportProperties) (*messages.Properties, error) {
	var vals map[Property]any
	if mc != nil {
		mc.mu.Lock()
		vals = maps.Clone(mc.values)
		mc.mu.Unlock()
	}
	r := roleUnset
	if defaults != nil {
		r = defaults.role
	}
	out := &messages.Properties{Values: make(map[string]*messages.PropertyValue)}
	for i := range propTable {
		d := &propTable[i]
		if d.kind != KindMessage {
			continue
		}
		v, ok := vals[d.name]
		if !ok {
			if (d.name == MsgOrdered || d.name == MsgReliable) && !defaults.IsSet(d.name) {
				continue
			}
			if v, ok = defaults.effective(d, r); !ok {
				continue
			}
		}
		out.Values[string(d.name)] = encodeValue(v)
	}
	return out, mc.Err()
}
