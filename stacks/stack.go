// Package stacks holds gotaps' protocol stacks in plain Go: each dials and
// listens, declares which RFC 9622 selection properties it can satisfy, and
// never touches the actor runtime.
//
// This is an implementation layer with no compatibility promise: import
// package taps instead.
package stacks

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"time"
)

// Capabilities say which RFC 9622 transport services a stack provides. A
// selection property set to Require needs the capability; Prohibit needs its
// absence.
type Capabilities struct {
	Reliability           bool
	PreserveOrder         bool
	CongestionControl     bool
	PreserveMsgBoundaries bool
	PerMsgReliability     bool
	Multistreaming        bool
	ZeroRTTMsg            bool
	FullChecksumSend      bool
	FullChecksumRecv      bool
	KeepAlive             bool
	Multipath             bool
	SoftErrorNotify       bool
	// Secure: the stack authenticates and encrypts (TLS, QUIC).
	Secure bool
	// ActiveReadBeforeSend: the passive side learns of a connection
	// before the active side sends anything, so either side may write
	// first (TCP, TLS, Unix). A QUIC stream becomes visible to the peer
	// only with its first data, and a UDP listener sees a peer only with
	// its first datagram.
	ActiveReadBeforeSend bool
}

// Options configure one dial or listen. The zero value is valid: no
// binding, no socket options, system defaults. Each stack applies the fields
// that make sense for it and ignores the rest (for example UDP ignores
// KeepAlive, Unix sockets ignore DSCP). Options are copied by value; a
// *tls.Config in TLS is cloned before use and never modified.
type Options struct {
	// Local is the local address to bind; the zero value lets the system
	// choose.
	Local netip.AddrPort
	// Interface binds the socket to a network interface (SO_BINDTODEVICE;
	// IP_BOUND_IF / IPV6_BOUND_IF on darwin) when not empty. Other
	// systems fail with errors.ErrUnsupported.
	Interface string
	// TemporaryAddress is RFC 9622 useTemporaryLocalAddress for IPv6
	// sockets: Require or Prefer set IPV6_ADDR_PREFERENCES to
	// IPV6_PREFER_SRC_TMP, Avoid or Prohibit to IPV6_PREFER_SRC_PUBLIC,
	// NoPreference (0) leaves the system default. The kernel takes it as a
	// preference (with no temporary address it uses a public one); MPTCP
	// sockets refuse the option and go without it. Applied by the TCP, TLS
	// and QUIC stacks; IPv4 sockets ignore it.
	TemporaryAddress int8
	// KeepAlive is the keep-alive idle time: TCP (and TLS) send the first
	// probe after this much idle time, QUIC sends a PING this often. 0
	// leaves keep-alives off.
	KeepAlive time.Duration
	// KeepAliveInterval is the time between TCP keep-alive probes once
	// they started; 0 uses the system default (15 s in Go). Only used when
	// KeepAlive > 0.
	KeepAliveInterval time.Duration
	// UserTimeout sets TCP_USER_TIMEOUT (RFC 5482 / RFC 9622
	// tcp.userTimeoutValue): how long sent data may stay unacknowledged
	// before TCP gives up. 0 leaves the system default, unless ConnTimeout
	// is set. Linux only: elsewhere it is ignored (and reads back as 0).
	UserTimeout time.Duration
	// ConnTimeout is RFC 9622 connTimeout: how long to keep trying to
	// deliver before declaring the connection failed. TCP and TLS map it
	// to TCP_USER_TIMEOUT when UserTimeout is 0; QUIC maps it to
	// MaxIdleTimeout. 0 means Disabled (system/protocol defaults).
	ConnTimeout time.Duration
	// DSCP is the Differentiated Services codepoint (6 bits, RFC 2474)
	// written to IP_TOS (IPv4) or IPV6_TCLASS (IPv6) as DSCP<<2. 0 is the
	// default class (DF) and leaves the socket untouched. Windows takes
	// the option but its QoS policy may send with another DSCP.
	DSCP uint8
	// MPTCP asks for Multipath TCP (TCP and TLS stacks). When the kernel
	// or the peer does not support it the connection silently falls back
	// to plain TCP; TransportInfo.MPTCP tells what was used.
	MPTCP bool
	// TLS configures the TLS and QUIC stacks: a client configuration for
	// Dial (RootCAs, Certificates, NextProtos for ALPN,
	// ClientSessionCache, ...) or a server configuration for Listen
	// (Certificates or GetCertificate, ClientAuth, NextProtos). Both
	// stacks refuse to run without it. QUIC uses NextProtos
	// ["gotaps"] when it is empty.
	TLS *tls.Config
	// ServerName is the name the client verifies the server's certificate
	// against (and sends as SNI) when TLS.ServerName is empty. When both
	// are empty, the remote IP address is used.
	ServerName string
	// EarlyData allows 0-RTT early data (QUIC, with a cached session): set
	// it only when the first message is safely replayable. Without it the
	// handshake completes (resumed where a ticket is cached) before Dial
	// returns, so nothing is ever sent as early data.
	EarlyData bool
	// NoEarlyData turns 0-RTT off (RFC 9622 zeroRttMsg Avoid or
	// Prohibit): a QUIC Listener refuses early data (quic.Config
	// Allow0RTT false: its session tickets allow none, and a client's
	// 0-RTT packets are rejected, the client sending their data again
	// after the handshake), and Dial does not send any, EarlyData or not.
	NoEarlyData bool
	// TLSAllowTruncation makes a TLS stream that the peer ends with a TCP
	// FIN but no close_notify alert, at a record boundary, a clean end
	// (io.EOF) rather than ErrTLSTruncated: for peers known to end their
	// streams that way (some HTTP/1.x servers), where the application
	// frames its data itself. A stream cut inside a record is
	// ErrTLSTruncated whatever this says. Off by default (RFC 8446 §6.1).
	TLSAllowTruncation bool
	// QUICDatagrams enables QUIC datagrams (RFC 9221); the Transports then
	// implement Datagrams.
	QUICDatagrams bool
	// RequireDatagrams (with QUICDatagrams; perMsgReliability Require)
	// makes a QUIC Dial (and a QUICRendezvous's) fail once the handshake
	// completed without the peer enabling datagrams: the session is
	// closed and the error wraps ErrDatagramsNotNegotiated and
	// errors.ErrUnsupported (after a 0-RTT Dial, WaitHandshake fails
	// so); a QUIC Listener (and a QUICRendezvous's AcceptConn) closes the
	// session of a client that did not enable them, and never returns
	// it. Default false: a peer without datagrams is used, and unreliable
	// messages go on the stream.
	RequireDatagrams bool
	// SendOnly: the connection only sends (direction UnidirectionalSend).
	// QUIC's Dial then opens a unidirectional stream rather than a
	// bidirectional one (RFC 9000 §2.1), so that the peer never sees a
	// stream it could answer on; the other stacks ignore it (the
	// connection shuts their reading before Ready).
	SendOnly bool
	// HandshakeTimeout bounds the server side handshake of each inbound
	// TLS or QUIC connection. 0 means 10 seconds.
	HandshakeTimeout time.Duration
	// Path is the filesystem path of a Unix domain socket; only the
	// Unix stack uses it (see DialPath and ListenPath).
	Path string
	// Backlog is ignored by stacks that cannot set it.
	Backlog int
	// ReusePort sets SO_REUSEADDR and SO_REUSEPORT on the TCP and TLS
	// stacks' sockets (Dial and Listen), so that a listening socket and
	// connecting sockets share Local's port: Rendezvous, where a TCP
	// simultaneous open, or the peer's SYN accepted by the listener, gives
	// both peers one connection. Off by default. Windows has no
	// SO_REUSEPORT: there Dial and Listen with it fail with
	// errors.ErrUnsupported.
	ReusePort bool
	// SoftErrors (RFC 9622 softErrorNotify) asks the UDP and UDP-Lite
	// stacks to set IP_RECVERR / IPV6_RECVERR and deliver ICMP errors as
	// *SoftError on the Transport's SoftErrors channel. When false, ICMP
	// errors are swallowed. Either way they never fail a Read or Write.
	// Linux only: elsewhere there is no error queue, the errors are
	// swallowed and the channel never delivers.
	SoftErrors bool
	// MulticastHopLimit is the hop limit (IP_MULTICAST_TTL /
	// IPV6_MULTICAST_HOPS) of the datagrams a UDP or UDP-Lite Dial to a
	// multicast group sends (RFC 9622 WithHopLimit): 1 to 255 as given,
	// 0 for the default, 1 (the link only, as the systems default it), and
	// a negative value for 0 (this host only). Such a Dial also sets the
	// outgoing interface (IP_MULTICAST_IF / IPV6_MULTICAST_IF) to
	// Interface when that is set, and never joins the group. See
	// multicast.go.
	MulticastHopLimit int
	// MulticastSource makes a UDP or UDP-Lite Listen on a multicast group
	// (Local's address is the group) join it source-specific (SSM:
	// IP_ADD_SOURCE_MEMBERSHIP, MCAST_JOIN_SOURCE_GROUP): only datagrams
	// from this source are received. The zero Addr joins any-source (ASM).
	MulticastSource netip.Addr
	// MulticastIgnore makes a UDP or UDP-Lite Listen on a multicast group
	// drop the datagrams from this address and port: the own sender of a
	// multicast rendezvous, whose datagrams the host's multicast loopback
	// brings back (IP_MULTICAST_LOOP stays on, so that the group's other
	// members on this host hear it). The zero AddrPort drops nothing.
	MulticastIgnore netip.AddrPort
	// SendChecksumLen and RecvChecksumLen are the UDP-Lite checksum
	// coverage in payload bytes (RFC 9622 msgChecksumLen /
	// recvChecksumLen): 0 (the default) is full coverage, a positive n
	// covers the first n payload bytes, a negative value covers only the
	// 8-byte header (the RFC's 0). RecvChecksumLen is the least coverage
	// a received datagram must have; less is dropped by the kernel (with
	// 0, any datagram whose checksum does not cover all of it: the
	// kernel's UDPLITE_RECV_CSCOV 0, set on every UDP-Lite socket). Only
	// the UDP-Lite stack uses them.
	SendChecksumLen int
	RecvChecksumLen int
	// AcceptFrom, when set, is asked by the QUIC and TLS Listeners about
	// each new peer before its handshake: a peer it refuses is never
	// returned by Accept (QUIC refuses the connection with
	// CONNECTION_REFUSED, TLS resets the TCP connection). The Listeners
	// of the other stacks return every peer, with nothing exchanged beyond
	// a TCP handshake or a datagram: their caller checks RemoteAddr.
	AcceptFrom func(remote net.Addr) bool
	// AcceptRetry, when set, is told by the TLS Listener, which accepts
	// under its handshakes, of each accept of its that failed for want of
	// a resource (AcceptRetryable) before it waits to accept again (local
	// is its address): its caller never sees that error from Accept. The
	// other stacks' Listeners return it from Accept.
	AcceptRetry func(local net.Addr, err error)
}

func (o Options) handshakeTimeout() time.Duration {
	if o.HandshakeTimeout > 0 {
		return o.HandshakeTimeout
	}
	return 10 * time.Second
}

// MaxLen is a message size limit (RFC 9622 sendMsgMaxLen /
// recvMsgMaxLen). Unlimited is true for byte streams; otherwise Bytes is
// the limit (0 = cannot send or receive).
type MaxLen struct {
	Bytes     int
	Unlimited bool
}

// TransportInfo is what a Transport reports about itself, read back from the
// socket (getsockopt) where the kernel keeps the value, so it shows what is
// in effect rather than what was asked for.
type TransportInfo struct {
	// Stack is the stack name ("tcp", "tls", "quic", "udp", "unix").
	Stack string
	// DSCP is the codepoint in the socket's IP_TOS / IPV6_TCLASS (>>2).
	DSCP uint8
	// UserTimeout is TCP_USER_TIMEOUT (0 = system default).
	UserTimeout time.Duration
	// KeepAlive reports SO_KEEPALIVE; KeepAliveIdle and
	// KeepAliveInterval are TCP_KEEPIDLE / TCP_KEEPINTVL. For QUIC,
	// KeepAliveIdle is the PING period asked for.
	KeepAlive         bool
	KeepAliveIdle     time.Duration
	KeepAliveInterval time.Duration
	// MPTCP is true when the connection runs Multipath TCP.
	MPTCP bool
	// SendMsgMaxLen and RecvMsgMaxLen are the largest Message the
	// Transport sends / receives in one piece.
	SendMsgMaxLen MaxLen
	RecvMsgMaxLen MaxLen
	// SingularMsgMaxLen is the largest Message sent in one packet, without
	// network-layer fragmentation or transport segmentation
	// (singularTransmissionMsgMaxLen, RFC 9622 §8.1.11.1): UDP and
	// UDP-Lite, the path MTU the kernel knows (IP_MTU / IPV6_MTU) less the
	// IP and UDP headers; TCP, the MSS (TCP_MAXSEG); TLS, the MSS less
	// one record's overhead. -1: not applicable (QUIC streams, Unix
	// sockets); 0: unknown (a system without these options).
	SingularMsgMaxLen int
	// Congestion is the TCP congestion control the socket runs
	// (TCP_CONGESTION: "cubic", "bbr", "lp", ...; TCP and TLS on Linux;
	// "" elsewhere).
	Congestion string
	// TLSVersion, ALPN, CipherSuite and Group describe the negotiated
	// security (TLS and QUIC; zero otherwise). Group is the key exchange
	// (tls.ConnectionState.CurveID; zero for RSA key exchange).
	TLSVersion  uint16
	CipherSuite uint16
	Group       tls.CurveID
	ALPN        string
	// Used0RTT: the connection carried 0-RTT early data (QUIC).
	Used0RTT bool
	// Resumed: the TLS session was resumed from a ticket.
	Resumed bool
	// Datagrams is true when QUIC datagrams were negotiated with the peer.
	Datagrams bool
	// MaxPacingRate is SO_MAX_PACING_RATE in bit/s (TCP and TLS; 0 =
	// unlimited or not applicable).
	MaxPacingRate uint64
	// SendChecksumCoverage and RecvChecksumCoverage are UDPLITE_SEND_CSCOV
	// and UDPLITE_RECV_CSCOV as the kernel keeps them: bytes covered
	// including the 8-byte UDP-Lite header, 0 = full coverage (UDP-Lite
	// only).
	SendChecksumCoverage int
	RecvChecksumCoverage int
	// SoftErrors is true when ICMP errors are delivered as *SoftError
	// (IP_RECVERR / IPV6_RECVERR set).
	SoftErrors bool
	// Multicast: a UDP or UDP-Lite transport dialled to a multicast group
	// (it sends to the group) or received by a Listener of one (a sender
	// to the group). For a dialled one, MulticastHopLimit is read back
	// from the socket (IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS); 0
	// otherwise.
	Multicast         bool
	MulticastHopLimit int
}

// SocketInfo is implemented by every Transport of this package.
type SocketInfo interface {
	// Info reads the Transport's effective settings. Safe for concurrent
	// use; it fails once the Transport is closed.
	Info() (TransportInfo, error)
}

// SendMsgMaxLen returns the largest Message t sends in one piece (what
// Info reports as SendMsgMaxLen). For this package's transports it is
// known without a system call (Info reads several socket options); other
// transports are asked through SocketInfo. ok is false when t does not
// tell (it then counts as unlimited).
func SendMsgMaxLen(t Transport) (l MaxLen, ok bool) {
	switch t := t.(type) {
	case *tcpTransport, *tlsTransport, *quicStream, *unixTransport:
		return MaxLen{Unlimited: true}, true
	case *udpTransport:
		return udpInfoFor(t.RemoteAddr()).SendMsgMaxLen, true
	case *udpPeer:
		return udpInfoFor(t.RemoteAddr()).SendMsgMaxLen, true
	case *udpLiteTransport:
		return udpInfoFor(t.RemoteAddr()).SendMsgMaxLen, true
	case *udpLitePeer:
		return udpInfoFor(t.RemoteAddr()).SendMsgMaxLen, true
	case SocketInfo:
		info, err := t.Info()
		if err != nil {
			return MaxLen{Unlimited: true}, false
		}
		return info.SendMsgMaxLen, true
	}
	return MaxLen{Unlimited: true}, false
}

// MultiStream is implemented by Transports that are one stream of a
// multistreaming connection (QUIC). The new Transports share the
// connection, which closes when the last of its stream Transports is closed.
type MultiStream interface {
	// OpenStream opens a new bidirectional stream on the same connection;
	// it blocks while the peer's stream limit is reached, until ctx ends.
	// The peer learns of the stream when the first data arrive.
	OpenStream(ctx context.Context) (Transport, error)
	// AcceptStream waits for the next stream the peer opens on the same
	// connection.
	AcceptStream(ctx context.Context) (Transport, error)
}

// Refuser is implemented by the Transports of MultiStream: Refuse resets
// a stream the peer opened (AcceptStream) that this side declines, both
// directions, with an error code that the peer's reads report as
// ErrStreamRefused. Unlike Abort, refusing the last stream of the
// connection ends it as a graceful close of that stream would.
type Refuser interface {
	Refuse() error
}

// ErrStreamRefused: the peer refused the stream (Refuser), for example
// because nothing on its side takes the streams this side opens.
var ErrStreamRefused = errors.New("the peer refused the stream")

// StreamOpener is implemented by the Transports of MultiStream that can
// open a stream without waiting. TryOpenStream opens a bidirectional
// stream, or with sendOnly a unidirectional one (UniStreams), when the
// peer's stream limit leaves room now; otherwise it fails with
// ErrStreamLimit and OpenStream (OpenSendStream) is the call that waits.
type StreamOpener interface {
	TryOpenStream(sendOnly bool) (Transport, error)
}

// ErrStreamLimit: the peer's limit of open streams is reached for now.
var ErrStreamLimit = errors.New("the peer's stream limit is reached")

// Datagrams is implemented by QUIC Transports dialled or accepted with
// Options.QUICDatagrams (RFC 9221 unreliable datagrams on the connection).
type Datagrams interface {
	// SendDatagram sends p as one datagram; a too large p fails with an
	// error telling the maximum size.
	SendDatagram(p []byte) error
	// ReceiveDatagram waits for the next datagram or until ctx ends.
	ReceiveDatagram(ctx context.Context) ([]byte, error)
}

// Transport is an established transport connection. Read returns the bytes
// of a byte stream (or one message of a boundary-preserving stack).
type Transport interface {
	net.Conn
	// CloseWrite ends the sending direction (TCP FIN) while reads go on.
	CloseWrite() error
	// Abort closes the connection at once, resetting it where the
	// protocol can (TCP RST).
	Abort() error
}

// QuiescentTransport is implemented by transports that can tell that
// nothing is left to exchange: no received byte unread and every sent byte
// acknowledged by the peer (TCP). Closing such a transport at once loses
// nothing, so a graceful Close need not wait for the peer's end of stream.
type QuiescentTransport interface {
	Quiescent() bool
}

// ReleaseWatcher is implemented by transports whose socket may outlive
// their Close or Abort (QUIC: a session's UDP socket, which its last
// stream's graceful close leaves open for the linger, and which the
// session's end releases on a goroutine of quic-go's). Released, called
// once the transport is closed or aborted, is closed once the socket
// this transport's end holds is released: at once when the transport's
// end does not end the socket's use (a QUIC stream that is not its
// session's last, or the last one of a session its listener keeps for
// the peer's next stream), else when the session has ended and let go of
// its socket (closed, or its reference on its listener's dropped).
type ReleaseWatcher interface {
	Released() <-chan struct{}
}

// EarlyTransport is implemented by transports that may be returned before
// their handshake completes (QUIC 0-RTT): only safely replayable data may be
// written before HandshakeComplete is closed.
type EarlyTransport interface {
	HandshakeComplete() <-chan struct{}
}

// HandshakeWaiter is an EarlyTransport that tells how its handshake ends
// (QUIC's Dial with 0-RTT): a race does not take such a transport for
// established before its handshake has completed.
type HandshakeWaiter interface {
	EarlyTransport
	// WaitHandshake blocks until the handshake has completed, has failed,
	// or ctx has ended. It returns the handshake's failure (the error that
	// ended the connection before the handshake completed), or ctx's
	// error. When the peer completed the handshake but rejected the early
	// data (RFC 9001 §4.6.2: nothing written before reached it, and the
	// stream went with it), it returns a Transport for a new stream of the
	// same connection, to be used instead: this one is then only aborted
	// (which leaves the connection to the new stream). Otherwise the
	// Transport is nil.
	WaitHandshake(ctx context.Context) (Transport, error)
}

// ResetWatcher is implemented by transports that can tell, with nothing
// read or written, that the peer reset the connection after its end of
// stream was read (a half-closed connection): a TCP RST (TCP, TLS; Linux
// only), a QUIC STOP_SENDING for the stream or the end of its connection.
type ResetWatcher interface {
	// WaitPeerReset blocks until the peer resets the connection and
	// returns the reset as an error. It returns nil once this side has
	// closed the transport or ended its sending side, and at once where
	// the reset cannot be watched. Call it only after Read returned
	// io.EOF, and from one goroutine.
	WaitPeerReset() error
}

// Listener accepts Transports.
type Listener interface {
	// Accept waits for the next inbound Transport.
	Accept() (Transport, error)
	// Close stops listening; a blocked Accept returns net.ErrClosed.
	Close() error
	// Addr is the bound local address.
	Addr() net.Addr
}

// Stack is one protocol stack (TCP, TLS over TCP, UDP, QUIC, ...).
// Implementations are safe for concurrent use.
type Stack interface {
	// Name is the stack's short name ("tcp", "tls", ...).
	Name() string
	// Capabilities tells what the stack provides.
	Capabilities() Capabilities
	// Dial establishes a Transport to remote. It returns when the stack's
	// whole handshake is done or ctx ends.
	Dial(ctx context.Context, remote netip.AddrPort, opts Options) (Transport, error)
	// Listen binds a Listener to opts.Local.
	Listen(ctx context.Context, opts Options) (Listener, error)
}

// ErrUnknownStack is returned by ByName for names no stack has.
var ErrUnknownStack = errors.New("unknown protocol stack")

// ByName returns the stack with the given name.
func ByName(name string) (Stack, error) {
	for _, s := range All() {
		if s.Name() == name {
			return s, nil
		}
	}
	return nil, ErrUnknownStack
}

// All returns every stack that serves IP endpoints, in the order of the
// default preference: tcp, tls, quic, udp, udplite. UDP-Lite comes last:
// selection only keeps it when full checksum coverage is not required,
// and UDP, with equal other capabilities, ranks before it. The Unix stack
// is not included (it needs a filesystem path, see Unix).
func All() []Stack {
	return []Stack{TCP(), TLS(), QUIC(), UDP(), UDPLite()}
}
