package taps

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math"
	"net"
	"net/netip"
	"os"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotaps/gotaps/framers"
	"github.com/stretchr/testify/require"
)

// Tests of the RFC 9622 §6.3 security parameters over real TLS and QUIC
// handshakes on loopback.

// secureInfo initiates pre, round-trips a message (a session ticket has
// arrived by then), aborts the connection and returns its stack and what
// its socket negotiated.
func secureInfo(t *testing.T, pre *Preconnection) (string, *SocketInfo) {
	t.Helper()
	c, err := pre.Initiate(testCtx(t))
	require.NoError(t, err)
	roundTrip(t, c, "hello")
	props := c.GetProperties()
	require.NotNil(t, props.Socket)
	c.Abort()
	<-c.Done()
	return props.Stack, props.Socket
}

// requireEstablishmentFails requires pre's Initiate to fail with an
// EstablishmentError after at least one attempt, and returns the error.
func requireEstablishmentFails(t *testing.T, pre *Preconnection) error {
	t.Helper()
	c, err := pre.Initiate(testCtx(t))
	if err == nil {
		c.Abort()
		<-c.Done()
		t.Fatalf("Initiate succeeded (%s, %+v); want an EstablishmentError", c.GetProperties().Stack, c.GetProperties().Socket)
	}
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.NotEmpty(t, ee.Attempts, "the handshake was tried: %v", err)
	return err
}

// requireFailsBeforeAnyPacket requires err (from Initiate or Listen) to be
// an EstablishmentError with reason and no attempt, wrapping a
// *SecurityParameterError for param; it returns that error.
func requireFailsBeforeAnyPacket(t *testing.T, err error, reason ErrorReason, param string) *SecurityParameterError {
	t.Helper()
	var ee *EstablishmentError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, reason, ee.Reason, "%v", err)
	require.Empty(t, ee.Attempts, "nothing was tried")
	var spe *SecurityParameterError
	require.ErrorAs(t, err, &spe)
	require.Equal(t, param, spe.Param)
	require.ErrorContains(t, err, param)
	return spe
}

// requireNothingArrived requires that no TCP connection reached ln.
func requireNothingArrived(t *testing.T, ln *net.TCPListener) {
	t.Helper()
	require.NoError(t, ln.SetDeadline(time.Now()))
	c, err := ln.Accept()
	if err == nil {
		c.Close()
		t.Fatal("a connection arrived")
	}
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
}

// unmapped is the address of a loopback socket, IPv4 unmapped.
func unmapped(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// ipPre is securePre to ln's port by IP address (the TLS server name, and
// session cache key, is then "127.0.0.1" instead of "localhost").
func ipPre(sys *System, ln *Listener, sec *SecurityParameters, tp *TransportProperties) *Preconnection {
	ap, _ := ln.LocalEndpoints()[0].Addr()
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(sec), WithTransportProperties(tp),
		WithAttemptDelay(20*time.Millisecond), WithRemoteEndpoint(NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithPort(ap.Port())))
	pre.AddFramer(framers.NewLengthPrefix())
	return pre
}

// TLS 1.2 only (allowedSecurityProtocols or a maximum version) negotiates
// TLS 1.2 with a default server, over TLS over TCP although QUIC ranks
// first by default; a server limited to TLS 1.2 listens on TLS over TCP
// only and negotiates TLS 1.2 with a default client; either side limited
// to a version the other does not allow fails the handshake.
func TestSecurityAllowedProtocolsAndMaxVersion(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	ln := secureListener(t, sys, pki.serverSec(), nil)
	require.Len(t, ln.LocalEndpoints(), 2, "a default secure listener listens on QUIC and TLS")
	for _, sec := range []*SecurityParameters{
		pki.clientSec().SetAllowedSecurityProtocols("tls1.2"),
		pki.clientSec().SetMaxVersion(tls.VersionTLS12),
	} {
		stack, info := secureInfo(t, securePre(sys, ln, sec, nil))
		require.Equal(t, "tls", stack, "QUIC is TLS 1.3 only: ruled out, though multistreaming is Prefer")
		require.Equal(t, "TLS 1.2", info.TLSVersion)
	}
	stack, info := secureInfo(t, securePre(sys, ln, pki.clientSec().SetAllowedSecurityProtocols("tls1.2", "tls1.3"), nil))
	require.Equal(t, "quic", stack)
	require.Equal(t, "TLS 1.3", info.TLSVersion)

	// a server limited to TLS 1.2
	ln12 := secureListener(t, sys, pki.serverSec().SetAllowedSecurityProtocols("tls1.2"), nil)
	require.Len(t, ln12.LocalEndpoints(), 1, "no QUIC listener: QUIC cannot run TLS 1.2")
	stack, info = secureInfo(t, securePre(sys, ln12, pki.clientSec(), prohibit(t, Multistreaming)))
	require.Equal(t, "tls", stack)
	require.Equal(t, "TLS 1.2", info.TLSVersion)
	err := requireEstablishmentFails(t, securePre(sys, ln12, pki.clientSec().SetAllowedSecurityProtocols("tls1.3"), prohibit(t, Multistreaming)))
	require.ErrorContains(t, err, "protocol version")

	// a server limited to TLS 1.3, a client to TLS 1.2
	ln13 := secureListener(t, sys, pki.serverSec().SetAllowedSecurityProtocols("tls1.3"), nil)
	err = requireEstablishmentFails(t, securePre(sys, ln13, pki.clientSec().SetAllowedSecurityProtocols("tls1.2"), nil))
	require.ErrorContains(t, err, "protocol version")
	stack, info = secureInfo(t, securePre(sys, ln13, pki.clientSec(), prohibit(t, Multistreaming)))
	require.Equal(t, "tls", stack)
	require.Equal(t, "TLS 1.3", info.TLSVersion)
}

// With security required and TLS 1.3 not allowed, a Preconnection that
// only QUIC could serve fails before any packet, with a typed error that
// says why (and the unfulfilled handler is called); so does Listen.
func TestSecurityTLS12OnlyRulesOutQUICBeforeAnyPacket(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer udp.Close()
	var unfulfilled atomic.Int32
	sec := pki.clientSec().SetAllowedSecurityProtocols("tls1.2")
	pre := NewPreconnection(WithSystem(sys), WithSecurityParameters(sec), WithProtocols("quic"),
		WithRemoteEndpoint(loopbackRemote(unmapped(udp.LocalAddr()))),
		WithUnfulfilledHandler(func(error) { unfulfilled.Add(1) }))
	_, err = pre.Initiate(testCtx(t))
	spe := requireFailsBeforeAnyPacket(t, err, ReasonNoCandidates, "allowedSecurityProtocols")
	require.Equal(t, "select", spe.Op)
	require.ErrorIs(t, err, ErrUnfulfilled)
	require.ErrorContains(t, err, "QUIC runs TLS 1.3 only")
	require.EqualValues(t, 1, unfulfilled.Load())
	require.NoError(t, udp.SetReadDeadline(time.Now()))
	_, _, err = udp.ReadFrom(make([]byte, 1500))
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "no datagram was sent")

	// the same with properties only QUIC satisfies, and to Listen
	tp := NewTransportProperties()
	require.NoError(t, tp.Require(Multistreaming))
	_, err = NewPreconnection(WithSystem(sys), WithSecurityParameters(sec), WithTransportProperties(tp),
		WithRemoteEndpoint(loopbackRemote(unmapped(udp.LocalAddr())))).Initiate(testCtx(t))
	requireFailsBeforeAnyPacket(t, err, ReasonNoCandidates, "allowedSecurityProtocols")
	_, err = NewPreconnection(WithSystem(sys), WithProtocols("quic"),
		WithSecurityParameters(pki.serverSec().SetMaxVersion(tls.VersionTLS12)),
		WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1"))).Listen(testCtx(t))
	requireFailsBeforeAnyPacket(t, err, ReasonNoCandidates, "allowedSecurityProtocols")

	// unusable versions fail as invalid configuration
	for _, sec := range []*SecurityParameters{
		pki.clientSec().SetAllowedSecurityProtocols("tls1.1"),
		pki.clientSec().SetMaxVersion(tls.VersionTLS11), // below the default minimum, TLS 1.2
		pki.clientSec().SetMinVersion(0x0305),
	} {
		_, err = NewPreconnection(WithSystem(sys), WithSecurityParameters(sec),
			WithRemoteEndpoint(loopbackRemote(unmapped(udp.LocalAddr())))).Initiate(testCtx(t))
		requireFailsBeforeAnyPacket(t, err, ReasonInvalidConfiguration, "allowedSecurityProtocols")
		require.ErrorIs(t, err, ErrInvalidSecurityParameter)
	}
}

// pinnedServerCertificate: a pinned chain matches when the server's chain
// starts with it, certificate by certificate; otherwise the establishment
// fails with a *CertificatePinError, over TLS and QUIC alike.
func TestSecurityPinnedServerCertificate(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	// the server sends its CA after its leaf
	server := pki.server
	server.Certificate = [][]byte{server.Certificate[0], pki.ca.Raw}
	ln := secureListener(t, sys, NewSecurityParameters().SetIdentity(server).SetALPN("gotaps-test"), nil)
	leaf, err := x509.ParseCertificate(pki.server.Certificate[0])
	require.NoError(t, err)
	other := newTestPKI(t)
	otherLeaf, err := x509.ParseCertificate(other.server.Certificate[0])
	require.NoError(t, err)

	for _, ss := range secureStacks {
		stack, tp := ss.stack, ss.props(t)
		t.Run(stack, func(t *testing.T) {
			for _, pins := range [][][]*x509.Certificate{
				{{leaf}},              // the leaf alone
				{{otherLeaf}, {leaf}}, // any of several
				{{leaf, pki.ca}},      // the whole chain
				{{otherLeaf, pki.ca}, {leaf, pki.ca}},
			} {
				got, info := secureInfo(t, securePre(sys, ln, pki.clientSec().SetPinnedServerCertificates(pins...), tp))
				require.Equal(t, stack, got)
				require.NotEmpty(t, info.TLSVersion)
			}
			for _, pins := range [][][]*x509.Certificate{
				{{otherLeaf}},
				{{leaf, other.ca}},       // the right leaf, another CA next
				{{pki.ca}},               // the CA is not the leaf
				{{leaf, pki.ca, pki.ca}}, // longer than the server's chain
			} {
				err := requireEstablishmentFails(t, securePre(sys, ln, pki.clientSec().SetPinnedServerCertificates(pins...), tp))
				require.ErrorContains(t, err, "pinned server certificate check failed")
				var pe *CertificatePinError
				require.ErrorAs(t, err, &pe)
				require.Len(t, pe.Presented, 2)
				require.Equal(t, leaf.Raw, pe.Presented[0].Raw)
				require.Equal(t, len(pins), pe.Pinned)
			}
			// the pin is checked before the trust verification callback,
			// which still runs after a match
			var called atomic.Int32
			sec := pki.clientSec().SetPinnedServerCertificates([]*x509.Certificate{leaf}).
				SetTrustVerificationCallback(func(tls.ConnectionState) error { called.Add(1); return nil })
			secureInfo(t, securePre(sys, ln, sec, tp))
			require.EqualValues(t, 1, called.Load())
			sec.SetPinnedServerCertificates([]*x509.Certificate{otherLeaf})
			requireEstablishmentFails(t, securePre(sys, ln, sec, tp))
			require.EqualValues(t, 1, called.Load(), "a failed pin check ends the handshake")
		})
	}
	// an empty pinned chain would match any server: refused
	_, err = securePre(sys, ln, pki.clientSec().SetPinnedServerCertificates([]*x509.Certificate{}), nil).Initiate(testCtx(t))
	requireFailsBeforeAnyPacket(t, err, ReasonInvalidConfiguration, "pinnedServerCertificate")
}

// ciphersuite: TLS 1.2 suites bind client and server; a TLS 1.3 suite's
// ID is refused, not ignored.
func TestSecurityCipherSuites(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	const (
		aes256   = tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
		chacha20 = tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
	)
	tls12 := func(sec *SecurityParameters) *SecurityParameters { return sec.SetAllowedSecurityProtocols("tls1.2") }
	ln := secureListener(t, sys, tls12(pki.serverSec()).SetCipherSuites(aes256), nil)
	def := secureListener(t, sys, pki.serverSec(), nil)

	err := requireEstablishmentFails(t, securePre(sys, ln, tls12(pki.clientSec()).SetCipherSuites(chacha20), nil))
	require.ErrorContains(t, err, "handshake failure")
	_, info := secureInfo(t, securePre(sys, ln, tls12(pki.clientSec()).SetCipherSuites(chacha20, aes256), nil))
	require.Equal(t, tls.CipherSuiteName(aes256), info.CipherSuite, "the one suite both allow")
	for _, id := range []uint16{chacha20, aes256} {
		_, info = secureInfo(t, securePre(sys, def, tls12(pki.clientSec()).SetCipherSuites(id), nil))
		require.Equal(t, "TLS 1.2", info.TLSVersion)
		require.Equal(t, tls.CipherSuiteName(id), info.CipherSuite, "the client's only suite")
	}

	for _, id := range []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_CHACHA20_POLY1305_SHA256, 0x1234} {
		_, err = securePre(sys, def, pki.clientSec().SetCipherSuites(aes256, id), nil).Initiate(testCtx(t))
		spe := requireFailsBeforeAnyPacket(t, err, ReasonInvalidConfiguration, "ciphersuite")
		require.ErrorIs(t, err, ErrInvalidSecurityParameter)
		require.Equal(t, id, spe.Value)
		_, err = NewPreconnection(WithSystem(sys), WithSecurityParameters(pki.serverSec().SetCipherSuites(id)),
			WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1"))).Listen(testCtx(t))
		requireFailsBeforeAnyPacket(t, err, ReasonInvalidConfiguration, "ciphersuite")
	}
	require.ErrorContains(t, NewSecurityParameters().Set("ciphersuite", tls.TLS_AES_128_GCM_SHA256),
		"TLS_AES_128_GCM_SHA256 is a TLS 1.3 cipher suite, which crypto/tls does not let an application choose")
}

// supportedGroup: the client's and the server's groups bind the key
// exchange, over TLS and QUIC; no common group fails the handshake.
func TestSecuritySupportedGroups(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	def := secureListener(t, sys, pki.serverSec(), nil)
	p256 := secureListener(t, sys, pki.serverSec().SetSupportedGroups(tls.CurveP256), nil)
	for _, ss := range secureStacks {
		stack, tp := ss.stack, ss.props(t)
		t.Run(stack, func(t *testing.T) {
			_, info := secureInfo(t, securePre(sys, def, pki.clientSec().SetSupportedGroups(tls.CurveP384), tp))
			require.Equal(t, "CurveP384", info.TLSGroup, "the client's only group")
			_, info = secureInfo(t, securePre(sys, p256, pki.clientSec(), tp))
			require.Equal(t, "CurveP256", info.TLSGroup, "the server's only group")
			_, info = secureInfo(t, securePre(sys, p256, pki.clientSec().SetSupportedGroups(tls.X25519, tls.CurveP256), tp))
			require.Equal(t, "CurveP256", info.TLSGroup)
			requireEstablishmentFails(t, securePre(sys, p256, pki.clientSec().SetSupportedGroups(tls.X25519), tp))
		})
	}
	_, err := securePre(sys, def, pki.clientSec().SetSupportedGroups(tls.CurveID(1)), nil).Initiate(testCtx(t))
	requireFailsBeforeAnyPacket(t, err, ReasonInvalidConfiguration, "supportedGroup")
}

// cachedSessionLifetime: a session cached longer ago than the lifetime is
// not resumed (a clock injected into the parameters moves on), over TLS
// and QUIC; without a lifetime it is.
func TestSecurityCachedSessionLifetime(t *testing.T) {
	for _, ss := range secureStacks {
		stack, tp := ss.stack, ss.props(t)
		t.Run(stack, func(t *testing.T) {
			sys := newTestSystem(t) // a System cache of its own
			pki := newTestPKI(t)
			ln := secureListener(t, sys, pki.serverSec(), tp)
			var skew atomic.Int64
			clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
			resumed := func(sec *SecurityParameters) []bool {
				sec.now = clock
				pre := securePre(sys, ln, sec, tp)
				skew.Store(0)
				var out []bool
				for i := range 4 {
					if i == 2 {
						skew.Store(int64(2 * time.Second))
					}
					got, info := secureInfo(t, pre)
					require.Equal(t, stack, got)
					out = append(out, info.Resumed)
				}
				return out
			}
			require.Equal(t, []bool{false, true, false, true},
				resumed(pki.clientSec().SetCachedSessionLifetime(time.Second).SetMaxCachedSessions(8)),
				"the session cached 2 s before is not resumed; the new one is")
			require.Equal(t, []bool{false, true, true, true}, resumed(pki.clientSec().SetMaxCachedSessions(8)),
				"no lifetime: resumed however old (within the ticket's)")
			require.Equal(t, []bool{false, true, false, true}, resumed(pki.clientSec().SetCachedSessionLifetime(time.Second)),
				"the System's cache, its sessions stamped when stored")
		})
	}
}

// maxCachedSessions: a cache of one session forgets the first server name
// once a second one is cached; a negative maximum caches nothing; the
// default System cache holds both.
func TestSecurityMaxCachedSessions(t *testing.T) {
	for _, ss := range secureStacks {
		stack, tp := ss.stack, ss.props(t)
		t.Run(stack, func(t *testing.T) {
			sys := newTestSystem(t)
			pki := newTestPKI(t)
			ln := secureListener(t, sys, pki.serverSec(), tp)
			resumed := func(sec *SecurityParameters) []bool {
				byName, byIP := securePre(sys, ln, sec, tp), ipPre(sys, ln, sec, tp)
				var out []bool
				for _, pre := range []*Preconnection{byName, byName, byIP, byName, byIP} {
					got, info := secureInfo(t, pre)
					require.Equal(t, stack, got)
					out = append(out, info.Resumed)
				}
				return out
			}
			require.Equal(t, []bool{false, true, false, false, false}, resumed(pki.clientSec().SetMaxCachedSessions(1)),
				"one session cached: each server name evicts the other's")
			require.Equal(t, []bool{false, true, false, true, true}, resumed(pki.clientSec().SetMaxCachedSessions(2)))
			require.Equal(t, []bool{false, false, false, false, false}, resumed(pki.clientSec().SetMaxCachedSessions(-1)),
				"no session cached")
			require.Equal(t, []bool{false, true, false, true, true}, resumed(pki.clientSec()), "the System's cache")
		})
	}
}

// signatureAlgorithm and preSharedKey have no crypto/tls API: asking for
// them fails Initiate and Listen before any packet, with
// errors.ErrUnsupported, rather than being ignored.
func TestSecurityUnsupportedParametersFailBeforeAnyPacket(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	defer tcp.Close()
	remote := loopbackRemote(unmapped(tcp.Addr()))
	for _, tt := range []struct {
		param string
		set   func(*SecurityParameters) *SecurityParameters
	}{
		{"signatureAlgorithm", func(s *SecurityParameters) *SecurityParameters {
			return s.SetSignatureAlgorithms(tls.ECDSAWithP256AndSHA256)
		}},
		{"preSharedKey", func(s *SecurityParameters) *SecurityParameters {
			return s.SetPreSharedKey(PreSharedKey{Identity: "client", Key: []byte("0123456789abcdef0123456789abcdef")})
		}},
	} {
		_, err := NewPreconnection(WithSystem(sys), WithSecurityParameters(tt.set(pki.clientSec())),
			WithProtocols("tls"), WithRemoteEndpoint(remote)).Initiate(testCtx(t))
		requireFailsBeforeAnyPacket(t, err, ReasonInvalidConfiguration, tt.param)
		require.ErrorIs(t, err, errors.ErrUnsupported)
		require.ErrorContains(t, err, "crypto/tls has no API")
		_, err = NewPreconnection(WithSystem(sys), WithSecurityParameters(tt.set(pki.serverSec())),
			WithLocalEndpoint(NewLocalEndpoint().WithIPAddress("127.0.0.1"))).Listen(testCtx(t))
		requireFailsBeforeAnyPacket(t, err, ReasonInvalidConfiguration, tt.param)
		require.ErrorIs(t, err, errors.ErrUnsupported)

		// withdrawn, the request no longer fails anything
		sec := tt.set(pki.clientSec())
		sec.SetSignatureAlgorithms().SetPreSharedKey(PreSharedKey{})
		_, err = tlsConfig(sec, false, false, sys)
		require.NoError(t, err)
	}
	requireNothingArrived(t, tcp)
}

// Set takes every RFC 9622 §6.3 name with its types, checks them, and
// applies the value as the typed setter does.
func TestSecuritySetByName(t *testing.T) {
	sys := newTestSystem(t)
	pki := newTestPKI(t)
	leaf, err := x509.ParseCertificate(pki.server.Certificate[0])
	require.NoError(t, err)
	psk := PreSharedKey{Identity: "id", Key: []byte("key")}
	type check func(t *testing.T, client, server *tls.Config)
	tests := []struct {
		param  string
		value  any
		want   error // nil, ErrInvalidSecurityParameter, ErrUnknownSecurityParameter or errors.ErrUnsupported
		stored bool  // an error for a value that was stored: tlsConfig fails with it too
		check  check
	}{
		{"allowedSecurityProtocols", []string{"tls1.3"}, nil, false, func(t *testing.T, c, _ *tls.Config) {
			require.Equal(t, [2]uint16{tls.VersionTLS13, tls.VersionTLS13}, [2]uint16{c.MinVersion, c.MaxVersion})
		}},
		{"allowedSecurityProtocols", "tls1.2", nil, false, func(t *testing.T, c, s *tls.Config) {
			require.Equal(t, [2]uint16{tls.VersionTLS12, tls.VersionTLS12}, [2]uint16{c.MinVersion, c.MaxVersion})
			require.Equal(t, uint16(tls.VersionTLS12), s.MaxVersion)
		}},
		{"allowedSecurityProtocols", []string{"tls1.2", "ssl3"}, ErrInvalidSecurityParameter, true, nil},
		{"allowedSecurityProtocols", tls.VersionTLS12, ErrInvalidSecurityParameter, false, nil},
		{"serverCertificate", pki.server, nil, false, func(t *testing.T, c, s *tls.Config) {
			require.Empty(t, c.Certificates, "never a client certificate")
			require.Len(t, s.Certificates, 1)
		}},
		{"clientCertificate", []tls.Certificate{pki.server}, nil, false, func(t *testing.T, c, s *tls.Config) {
			require.Len(t, c.Certificates, 1)
			require.Nil(t, s, "never a server certificate: a listener without identity")
		}},
		{"clientCertificate", &pki.server, ErrInvalidSecurityParameter, false, nil},
		{"pinnedServerCertificate", leaf, nil, false, func(t *testing.T, c, s *tls.Config) {
			require.NoError(t, c.VerifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}}))
			var pe *CertificatePinError
			require.ErrorAs(t, c.VerifyConnection(tls.ConnectionState{PeerCertificates: []*x509.Certificate{pki.ca}}), &pe)
			require.Nil(t, s.VerifyConnection, "a listener checks no pin")
		}},
		{"pinnedServerCertificate", []*x509.Certificate{leaf, pki.ca}, nil, false, nil},
		{"pinnedServerCertificate", [][]*x509.Certificate{{leaf}, {pki.ca}}, nil, false, nil},
		{"pinnedServerCertificate", [][]*x509.Certificate{{leaf}, {nil}}, ErrInvalidSecurityParameter, true, nil},
		{"pinnedServerCertificate", pki.server, ErrInvalidSecurityParameter, false, nil},
		{"alpn", "h3", nil, false, func(t *testing.T, c, _ *tls.Config) { require.Equal(t, []string{"h3"}, c.NextProtos) }},
		{"alpn", []byte("h3"), ErrInvalidSecurityParameter, false, nil},
		{"supportedGroup", []tls.CurveID{tls.X25519, tls.CurveP256}, nil, false, func(t *testing.T, c, s *tls.Config) {
			require.Equal(t, []tls.CurveID{tls.X25519, tls.CurveP256}, c.CurvePreferences)
			require.Equal(t, c.CurvePreferences, s.CurvePreferences)
		}},
		{"supportedGroup", tls.CurveID(9999), ErrInvalidSecurityParameter, true, nil},
		{"supportedGroup", uint16(tls.X25519), ErrInvalidSecurityParameter, false, nil},
		{"ciphersuite", tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, nil, false, func(t *testing.T, c, s *tls.Config) {
			require.Equal(t, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, c.CipherSuites)
			require.Equal(t, c.CipherSuites, s.CipherSuites)
		}},
		{"ciphersuite", []uint16{tls.TLS_AES_256_GCM_SHA384}, ErrInvalidSecurityParameter, true, nil},
		{"ciphersuite", int(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), ErrInvalidSecurityParameter, false, nil},
		{"signatureAlgorithm", tls.PSSWithSHA256, errors.ErrUnsupported, true, nil},
		{"signatureAlgorithm", []string{"rsa_pss_rsae_sha256"}, ErrInvalidSecurityParameter, false, nil},
		{"maxCachedSessions", 4, nil, false, func(t *testing.T, c, _ *tls.Config) {
			sc, ok := c.ClientSessionCache.(*sessionCache)
			require.True(t, ok)
			require.NotSame(t, sys.sessionCache(), sc, "a cache of its own")
		}},
		{"maxCachedSessions", int64(-1), nil, false, func(t *testing.T, c, _ *tls.Config) {
			require.Nil(t, c.ClientSessionCache)
		}},
		{"maxCachedSessions", "4", ErrInvalidSecurityParameter, false, nil},
		{"cachedSessionLifetimeSeconds", 30, nil, false, func(t *testing.T, c, _ *tls.Config) {
			require.Equal(t, 30*time.Second, c.ClientSessionCache.(*sessionCache).lifetime)
		}},
		{"cachedSessionLifetimeSeconds", time.Minute, nil, false, func(t *testing.T, c, _ *tls.Config) {
			require.Equal(t, time.Minute, c.ClientSessionCache.(*sessionCache).lifetime)
		}},
		{"cachedSessionLifetimeSeconds", -1, ErrInvalidSecurityParameter, true, nil},
		{"cachedSessionLifetimeSeconds", 1.5, ErrInvalidSecurityParameter, false, nil},
		{"cachedSessionLifetimeSeconds", int64(math.MaxInt64), ErrInvalidSecurityParameter, false, nil},
		{"maxCachedSessions", uint64(math.MaxUint64), ErrInvalidSecurityParameter, false, nil},
		{"preSharedKey", psk, errors.ErrUnsupported, true, nil},
		{"preSharedKey", &psk, errors.ErrUnsupported, true, nil},
		{"preSharedKey", "key", ErrInvalidSecurityParameter, false, nil},
		{"securityNeeded", true, ErrUnknownSecurityParameter, false, nil},
	}
	for i, tt := range tests {
		sec := NewSecurityParameters().SetTrustedCAs(pki.pool)
		err := sec.Set(tt.param, tt.value)
		if tt.want == nil {
			if err != nil {
				t.Errorf("#%d: Set(%q, %T): %v", i, tt.param, tt.value, err)
			}
		} else {
			var spe *SecurityParameterError
			if !errors.Is(err, tt.want) || !errors.As(err, &spe) || spe.Param != tt.param {
				t.Errorf("#%d: Set(%q, %T) = %v; want a *SecurityParameterError for it wrapping %v", i, tt.param, tt.value, err, tt.want)
			}
		}
		client, cerr := tlsConfig(sec, false, false, sys)
		server, serr := tlsConfig(sec, true, false, sys)
		if tt.stored {
			if !errors.Is(cerr, tt.want) || !errors.Is(serr, tt.want) {
				t.Errorf("#%d: %q: tlsConfig = %v, %v; want the error Set gave", i, tt.param, cerr, serr)
			}
			continue
		}
		if cerr != nil {
			t.Errorf("#%d: %q: client tlsConfig: %v", i, tt.param, cerr)
			continue
		}
		if errors.Is(serr, errNoIdentity) {
			server = nil
		} else if serr != nil {
			t.Errorf("#%d: %q: server tlsConfig: %v", i, tt.param, serr)
			continue
		}
		if tt.check != nil {
			if server == nil && tt.param != "clientCertificate" {
				sec.SetIdentity(pki.server) // the listener side of the check needs an identity
				server, serr = tlsConfig(sec, true, false, sys)
				require.NoError(t, serr)
			}
			t.Run(tt.param, func(t *testing.T) { tt.check(t, client, server) })
		}
	}
}

// Every field of SecurityParameters is copied by clone (a Preconnection's
// copy), and a connection's Clone keeps the negotiated constraints.
func TestSecurityParametersInheritedOnClone(t *testing.T) {
	pki := newTestPKI(t)
	sec := NewOpportunisticSecurityParameters().SetTrustedCAs(pki.pool).SetIdentity(pki.server).
		SetServerCertificates(pki.server).SetClientCertificates(pki.server).SetALPN("a").SetServerName("n").
		SetMinVersion(tls.VersionTLS12).SetMaxVersion(tls.VersionTLS13).SetAllowedSecurityProtocols("bad").
		SetCipherSuites(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256).SetSupportedGroups(tls.X25519).
		SetSignatureAlgorithms(tls.PSSWithSHA256).SetPreSharedKey(PreSharedKey{Identity: "i"}).
		SetPinnedServerCertificates([]*x509.Certificate{pki.ca}).
		SetTrustVerificationCallback(func(tls.ConnectionState) error { return nil }).
		SetIdentityChallengeCallback(func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return nil, nil }).
		SetSessionCache(tls.NewLRUClientSessionCache(1)).SetMaxCachedSessions(3).
		SetCachedSessionLifetime(time.Hour).SetTruncationAllowed(true)
	sec.now = time.Now
	cp := reflect.ValueOf(sec.clone()).Elem()
	for i := range cp.NumField() {
		if f := cp.Type().Field(i); f.Name != "mu" && cp.Field(i).IsZero() {
			t.Errorf("clone did not copy %s", f.Name)
		}
	}

	// a TLS 1.2 connection's clone is a TLS 1.2 connection with the same
	// suite
	sys := newTestSystem(t)
	ln := secureListener(t, sys, pki.serverSec(), nil)
	const suite = tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
	c, err := securePre(sys, ln, pki.clientSec().SetAllowedSecurityProtocols("tls1.2").SetCipherSuites(suite), nil).Initiate(testCtx(t))
	require.NoError(t, err)
	defer func() { c.AbortGroup(); <-c.Done() }()
	clone, err := c.Clone(testCtx(t))
	require.NoError(t, err)
	roundTrip(t, clone, "clone")
	props := clone.GetProperties()
	require.Equal(t, "tls", props.Stack)
	require.Equal(t, "TLS 1.2", props.Socket.TLSVersion)
	require.Equal(t, tls.CipherSuiteName(suite), props.Socket.CipherSuite)
	clone.Abort()
	<-clone.Done()
}
