package taps

import (
	"crypto/tls"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/gotaps/gotaps/actors"
	"github.com/gotaps/gotaps/messages"
	"github.com/gotaps/gotaps/stacks"
)

// This file turns RFC 9622 connection properties and security parameters
// into the socket options and TLS configuration of the protocol stacks, and
// checks the path and multipath Selection Properties before any packet.

// stackOptions maps the connection properties of tp to stack options
// (RFC 9622 §8.1, §8.2): connTimeout and tcp.userTimeoutValue to
// TCP_USER_TIMEOUT (or the QUIC idle timeout), keepAlive and
// keepAliveTimeout to keep-alive probes (a keepAliveTimeout turns them on
// unless keepAlive is Avoid or Prohibit), connCapacityProfile to the DSCP,
// multipath (Active or Passive) to MPTCP on TCP-based stacks, direction
// UnidirectionalSend to a unidirectional QUIC stream (SendOnly),
// useTemporaryLocalAddress to IPV6_ADDR_PREFERENCES, softErrorNotify
// (Prefer or Require) to ICMP error delivery, zeroRttMsg (Avoid or
// Prohibit) to no 0-RTT (NoEarlyData), perMsgReliability (Prefer or
// Require) to QUIC datagrams (Require: RequireDatagrams, an attempt whose
// peer did not enable them fails), and recvChecksumLen and the default
// msgChecksumLen to the UDP-Lite checksum coverage. The rate properties
// are applied by the connection itself (they can change on an open
// connection); the interface and pvd properties per attempt, by the
// candidate planner.
func stackOptions(tp *TransportProperties, r role) stacks.Options {
	var o stacks.Options
	if v, ok := tp.effective(descOf(UseTemporaryLocalAddress), r); ok {
		if p, ok := v.(Preference); ok {
			o.TemporaryAddress = int8(p)
		}
	}
	if v, ok := tp.Get(ConnTimeout); ok {
		if d, ok := v.(time.Duration); ok {
			o.ConnTimeout = d
		}
	}
	if v, _ := tp.Get(TCPUserTimeoutEnabled); v == true {
		if d, ok := mustGet(tp, TCPUserTimeoutValue).(time.Duration); ok {
			o.UserTimeout = d
		}
	}
	if pref := tp.Preference(KeepAlive); pref == Prefer || pref == Require {
		if d, ok := mustGet(tp, KeepAliveTimeout).(time.Duration); ok && (o.ConnTimeout == 0 || d <= o.ConnTimeout) {
			o.KeepAlive = d
		} else if !ok {
			o.KeepAlive = 15 * time.Second // keepAlive asked for with no period: Go's default idle time
		}
	} else if d, ok := mustGet(tp, KeepAliveTimeout).(time.Duration); ok && pref == NoPreference && (o.ConnTimeout == 0 || d <= o.ConnTimeout) {
		o.KeepAlive = d // a keepAliveTimeout asks for keep-alives where the stack has them
	}
	if c, ok := mustGet(tp, ConnCapacityProfile).(CapacityProfile); ok {
		o.DSCP = c.DSCP()
	}
	if pref := tp.Preference(SoftErrorNotify); pref == Prefer || pref == Require {
		o.SoftErrors = true
	}
	if pref := tp.Preference(ZeroRTTMsg); pref == Avoid || pref == Prohibit {
		o.NoEarlyData = true // no 0-RTT sent, and a QUIC Listener refuses it
	}
	if pref := tp.Preference(PerMsgReliability); pref == Prefer || pref == Require {
		o.QUICDatagrams = true // unreliable messages as QUIC datagrams (RFC 9221)
		// Require: an attempt whose peer did not enable them fails
		o.RequireDatagrams = pref == Require
	}
	o.RecvChecksumLen = checksumOption(mustGet(tp, RecvChecksumLen))
	o.SendChecksumLen = checksumOption(mustGet(tp, MsgChecksumLen))
	if v, ok := tp.effective(descOf(Multipath), r); ok {
		if m, ok := v.(MultipathMode); ok && m != MultipathDisabled {
			o.MPTCP = true
		}
	}
	if d, ok := mustGet(tp, Direction).(CommunicationDirection); ok && d == UnidirectionalSend {
		o.SendOnly = true // QUIC dials a unidirectional stream
	}
	return o
}

// stackOptionsFromMessage is messages.ConnectionConfig.DeriveStackOptions:
// base with its property-dependent fields derived anew (stackOptions,
// initiate role: the options are used to dial) from the encoded
// properties props. It is pure; props that do not decode leave base
// unchanged.
func stackOptionsFromMessage(props *messages.Properties, base stacks.Options) stacks.Options {
	tp, err := propsFromMessage(props)
	if err != nil {
		return base
	}
	base = withPropertyOptions(base, stackOptions(tp, roleInitiate))
	if v, _ := tp.Get(IsolateSession); v == true && base.TLS != nil && base.TLS.ClientSessionCache != nil {
		// isolateSession set on an open connection: later dials resume
		// no session from a cache shared outside the group (the racing
		// cache reads the property itself)
		c := base.TLS.Clone()
		c.ClientSessionCache = nil
		base.TLS = c
	}
	return base
}

// withPropertyOptions returns base with the fields stackOptions derives
// taken from o.
func withPropertyOptions(base, o stacks.Options) stacks.Options {
	base.ConnTimeout, base.UserTimeout = o.ConnTimeout, o.UserTimeout
	base.KeepAlive, base.DSCP, base.SoftErrors = o.KeepAlive, o.DSCP, o.SoftErrors
	base.RecvChecksumLen, base.SendChecksumLen, base.MPTCP = o.RecvChecksumLen, o.SendChecksumLen, o.MPTCP
	base.SendOnly, base.NoEarlyData = o.SendOnly, o.NoEarlyData
	return base
}

// checksumOption maps recvChecksumLen / msgChecksumLen (bytes >= 0 or
// FullCoverage) to the stacks' coverage: 0 full, n > 0 the first n payload
// bytes, negative the header only (the property's 0).
func checksumOption(v any) int {
	n, ok := v.(int64)
	switch {
	case !ok:
		return 0
	case n == 0:
		return -1
	}
	return int(n)
}

func mustGet(tp *TransportProperties, p Property) any {
	v, _ := tp.Get(p)
	return v
}

// errNoIdentity: a secure Listener needs a certificate.
var errNoIdentity = errors.New("a secure listener needs a local identity (SecurityParameters.SetIdentity or SetServerCertificates)")

// recoverCallback, deferred by a wrapper of an application's TLS callback,
// makes a panic of that callback its error, a *stacks.TLSCallbackPanicError:
// crypto/tls then fails the handshake with it. Over QUIC the handshake runs
// on goroutines of crypto/tls and quic-go, where a panic would end the
// process; over TCP the TLS stack's own recover is then not needed.
func recoverCallback(err *error) {
	if p := recover(); p != nil {
		*err = &stacks.TLSCallbackPanicError{Value: p, Stack: debug.Stack()}
	}
}

// tlsConfig builds the TLS configuration of a Preconnection's security
// parameters for one role. It returns nil when sec does not allow
// security, and a *SecurityParameterError when a parameter cannot be used
// (see SecurityParameters). The application's callbacks (trust
// verification, identity challenge) are wrapped by recoverCallback, so
// that a panicking callback fails the handshake on every stack instead of
// crashing the process.
func tlsConfig(sec *SecurityParameters, listen bool, isolate bool, sys *System) (*tls.Config, error) {
	if sec == nil || sec.Mode() == SecurityDisabled {
		return nil, nil
	}
	sec.mu.Lock()
	defer sec.mu.Unlock()
	if err := sec.problemLocked(); err != nil {
		return nil, err
	}
	c := &tls.Config{
		RootCAs:          sec.roots,
		NextProtos:       append([]string(nil), sec.alpn...),
		ServerName:       sec.serverName,
		CipherSuites:     append([]uint16(nil), sec.suites...),
		CurvePreferences: append([]tls.CurveID(nil), sec.groups...),
	}
	c.MinVersion, c.MaxVersion = sec.versionsLocked()
	c.VerifyConnection = sec.verifyConnectionLocked(listen)
	identity := sec.roleIdentity(listen)
	if listen {
		if len(identity) == 0 {
			if sec.mode == SecurityOpportunistic {
				return nil, nil
			}
			return nil, errNoIdentity
		}
		c.Certificates = append([]tls.Certificate(nil), identity...)
		switch {
		case sec.roots != nil: // trusted CAs on a listener verify client certificates
			c.ClientCAs = sec.roots
			c.ClientAuth = tls.VerifyClientCertIfGiven
		case sec.verify != nil:
			// no CAs, a trust verification callback: the client's
			// certificate, if it sends one, is asked for and handed to
			// the callback (crypto/tls checks that the client holds its
			// key), which is its only judge; without this request the
			// callback never saw one
			c.ClientAuth = tls.RequestClientCert
		}
		return c, nil
	}
	if len(identity) > 0 {
		c.Certificates = append([]tls.Certificate(nil), identity...)
	}
	if ch := sec.challenge; ch != nil {
		fallback := c.Certificates
		c.GetClientCertificate = func(info *tls.CertificateRequestInfo) (cert *tls.Certificate, err error) {
			defer recoverCallback(&err)
			if cert, err = ch(info); cert != nil || err != nil {
				return cert, err
			}
			// no answer (nil, nil): the configured client identity, as
			// crypto/tls would choose it without a callback; a nil
			// certificate would crash crypto/tls' handshake (over QUIC,
			// on a goroutine of its own: the process)
			for i := range fallback {
				if info.SupportsCertificate(&fallback[i]) == nil {
					return &fallback[i], nil
				}
			}
			return &tls.Certificate{}, nil // no certificate
		}
	}
	if sec.mode == SecurityOpportunistic {
		// opportunistic security is unauthenticated (RFC 7435): a server
		// whose certificate cannot be verified is still talked to over
		// TLS rather than in plain text; the trust verification callback,
		// if any, still runs
		c.InsecureSkipVerify = true
	}
	c.ClientSessionCache = sec.clientSessionCacheLocked(isolate, sys)
	return c, nil
}

// Errors of the path and multipath Selection Properties.
var (
	// ErrNoNetworkPath: no network path satisfies the path Selection
	// Properties (interface, pvd, useTemporaryLocalAddress). Every
	// *PathError unwraps to it.
	ErrNoNetworkPath = stacks.ErrNoNetworkPath
	// ErrPvDUnsupported: a pvd entry is Required, but this system has no
	// Provisioning Domain API, so no path has a PvD.
	ErrPvDUnsupported = stacks.ErrPvDUnsupported
	// ErrPropertyUnsatisfiable: a property value this system cannot honour
	// for one connection (multipathPolicy other than Handover with
	// multipath on, advertisesAltaddr true). It is wrapped by a
	// *PropertyError naming the property.
	ErrPropertyUnsatisfiable = errors.New("property value cannot be satisfied on this system")
)

// PathError tells which path Selection Property cannot be satisfied and
// why (a Required interface that is not up, a Required pvd, an attempt
// routed out of a Prohibited interface, no temporary address for
// useTemporaryLocalAddress Require, ...). It unwraps to ErrNoNetworkPath
// and, when set, Err (ErrPvDUnsupported for pvd). An EstablishmentError
// with ReasonNoCandidates carries it.
type PathError struct {
	// Property is Interface, PvD or UseTemporaryLocalAddress.
	Property Property
	// Name is the interface or PvD entry, or the attempt's endpoint.
	Name string
	// Reason explains what could not be satisfied.
	Reason string
	// Err is an additional cause, or nil.
	Err error
}

func (e *PathError) Error() string {
	return (&stacks.PathError{Property: string(e.Property), Name: e.Name, Reason: e.Reason, Err: e.Err}).Error()
}

// Unwrap returns ErrNoNetworkPath and Err.
func (e *PathError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrNoNetworkPath, e.Err}
	}
	return []error{ErrNoNetworkPath}
}

// publicPathError replaces the stacks' path error in err by a *PathError,
// keeping ErrNoCandidates in the chain when err had it.
func publicPathError(err error) error {
	var spe *stacks.PathError
	if !errors.As(err, &spe) {
		return err
	}
	pe := &PathError{Property: Property(spe.Property), Name: spe.Name, Reason: spe.Reason, Err: spe.Err}
	if errors.Is(err, actors.ErrNoCandidates) {
		return fmt.Errorf("%w: %w", actors.ErrNoCandidates, pe)
	}
	return pe
}

// multipathPrefs adds to the stack selection preferences what the
// multipath mode asks for: Active ranks multipath-capable stacks first
// (the pseudo-property "multipathProtocol" at Prefer; RFC 9622 §6.2.14:
// enabling multipath does not require a multipath-capable protocol).
func multipathPrefs(prefs map[string]int8, tp *TransportProperties, r role) {
	if v, ok := tp.effective(descOf(Multipath), r); ok && v == MultipathActive {
		prefs["multipathProtocol"] = stacks.Prefer
	}
}

// checkSelection checks, before any packet, the Selection Properties that
// select paths rather than stacks, on the encoded properties of cfg and
// the selected stacks sel:
//
//   - interface and pvd: a Required interface entry must name an interface
//     that is up, a Required pvd fails (stacks.PlanPaths); the rest is
//     applied per attempt by the candidate planner;
//   - multipathPolicy: the Linux in-kernel MPTCP path manager is
//     configured per network namespace (ip mptcp endpoint, the
//     net.mptcp sysctls), not per socket, so only the default Handover
//     can be accepted when multipath is on (not Disabled) and a selected
//     stack is multipath-capable;
//   - advertisesAltaddr: the path manager, not the socket, decides
//     whether ADD_ADDR is sent, so true cannot be honoured.
//
// The error is an *EstablishmentError: ReasonNoCandidates with a
// *PathError, or ReasonInvalidConfiguration with a *PropertyError
// wrapping ErrPropertyUnsatisfiable.
func checkSelection(cfg *messages.ConnectionConfig, sel []stacks.Stack) error {
	m := cfg.Properties
	toInt8 := func(in map[string]Preference) map[string]int8 {
		out := make(map[string]int8, len(in))
		for k, v := range in {
			out[k] = int8(v)
		}
		return out
	}
	prefs := stacks.PathPrefs{
		Interface:        toInt8(namedPrefsOf(m, Interface)),
		PvD:              toInt8(namedPrefsOf(m, PvD)),
		TemporaryAddress: int8(prefOf(m, UseTemporaryLocalAddress)),
	}
	var ifs []stacks.NetInterface
	if len(prefs.Interface) > 0 {
		var err error
		if ifs, err = stacks.Interfaces(); err != nil {
			return &EstablishmentError{Reason: ReasonInvalidConfiguration, Err: fmt.Errorf("interface: %w", err)}
		}
	}
	if _, err := stacks.PlanPaths(prefs, ifs); err != nil {
		return &EstablishmentError{Reason: ReasonNoCandidates, Err: publicPathError(err)}
	}
	unsatisfiable := func(p Property, v any, why string) error {
		return &EstablishmentError{Reason: ReasonInvalidConfiguration, Err: &PropertyError{Op: "select", Property: p, Value: v,
			Err: fmt.Errorf("%w: %s", ErrPropertyUnsatisfiable, why)}}
	}
	if err := multipathPolicyError(m, sel, multipathPolicyOf(m)); err != nil {
		return unsatisfiable(MultipathPolicy, multipathPolicyOf(m), err.Error())
	}
	if v, _ := boolOf(m, AdvertisesAltaddr); v {
		return unsatisfiable(AdvertisesAltaddr, true,
			"the Linux MPTCP path manager, not the connection, decides which addresses are advertised (ADD_ADDR)")
	}
	return nil
}

// multipathPolicyError says why policy cannot be honoured for a
// connection with the properties m and the stacks sel, or returns nil.
func multipathPolicyError(m *messages.Properties, sel []stacks.Stack, policy MultipathPolicyMode) error {
	mode := multipathOf(m)
	if mode == MultipathDisabled || policy == Handover {
		return nil
	}
	for _, st := range sel {
		if st.Capabilities().Multipath {
			return fmt.Errorf("%v with multipath %v: the Linux MPTCP path manager is configured per network namespace, "+
				"not per connection; only the default Handover is accepted (or set multipath to Disabled)", policy, mode)
		}
	}
	return nil
}

// prohibitedBy maps a Connection Property that turns a feature on to the
// Selection Property whose Prohibit contradicts it (checkSetProperty).
var prohibitedBy = map[Property]Property{
	KeepAliveTimeout:          KeepAlive,
	RetransmitNotifyThreshold: RetransmitNotify,
}

// checkSetProperty refuses, on an open connection (cfg is its
// configuration), a connection property value this system cannot honour:
// multipathPolicy other than Handover with multipath on, as checkSelection
// does before establishment (a *PropertyError wrapping
// ErrPropertyUnsatisfiable), and a keepAliveTimeout (a
// _gotaps.retransmitNotifyThreshold) other than Disabled on a connection
// that Prohibits keepAlive (_gotaps.retransmitNotify), as Validate does (a
// *PropertyError wrapping ErrConflictingProperties).
func checkSetProperty(cfg *messages.ConnectionConfig, p Property, v any) error {
	if sel, ok := prohibitedBy[p]; ok && v != Disabled && cfg != nil &&
		cfg.Properties.GetValues()[string(sel)].GetPreference() == int32(Prohibit) {
		// the Selection Property is the connection's for good (RFC 9622
		// §6.2): the feature stays off, as Validate has it
		return &PropertyError{Property: p, Value: v,
			Err: fmt.Errorf("%w: %s=%v contradicts Prohibit %s", ErrConflictingProperties, p, v, sel)}
	}
	pol, ok := v.(MultipathPolicyMode)
	if p != MultipathPolicy || !ok || cfg == nil {
		return nil
	}
	if err := multipathPolicyError(cfg.Properties, cfg.Stacks, pol); err != nil {
		return &PropertyError{Property: p, Value: v, Err: fmt.Errorf("%w: %v", ErrPropertyUnsatisfiable, err)}
	}
	return nil
}

// readBackSelection makes the Selection Properties of a connection's
// ConnectionProperties tell what the connection really does: multipath
// reads MultipathDisabled unless the socket really runs Multipath TCP
// (net.TCPConn.MultipathTCP, read back in Socket.MPTCP). advertisesAltaddr
// always reads false: a connection with it true is never made.
func readBackSelection(p *ConnectionProperties) {
	if p.Properties == nil || p.Socket == nil {
		return
	}
	if !p.Socket.MPTCP {
		p.Properties.store(Multipath, MultipathDisabled)
	} else if v, _ := p.Properties.Get(Multipath); v == MultipathDisabled {
		p.Properties.store(Multipath, MultipathPassive) // accepted from a peer that asked for it
	}
}
