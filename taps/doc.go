// Package taps is gotaps' public API: the Transport Services interface of
// RFC 9622 (architecture RFC 9621, implementation RFC 9623) in Go. An
// application describes what it needs from a transport (reliability,
// message boundaries, security, ...) and where it wants to go; gotaps
// chooses the protocol stacks and paths, races the candidates, and hands
// back a message-oriented Connection. It is the only package applications
// import, besides [github.com/gotaps/gotaps/framers] for message framers.
//
// # Connections
//
// A [Preconnection] is the template: local and remote endpoints
// ([NewLocalEndpoint], [NewRemoteEndpoint]), [TransportProperties],
// [SecurityParameters] and framers. [Preconnection.Initiate] establishes a
// [Connection] (active open) and returns it when it is Ready;
// [Preconnection.Listen] returns a [Listener] whose [Listener.Accept]
// yields received Connections (passive open). When several remote
// endpoints or protocol stacks fit, Initiate races them (RFC 8305 style,
// [WithAttemptDelay]) and keeps the first that succeeds;
// [Connection.EstablishmentReport] tells what happened.
//
// A Connection sends and receives Messages: [Connection.Send] returns when
// the Message is Sent, [Connection.Receive] returns one complete Message
// (or a part of one, with [MinIncompleteLength] and [MaxLength]).
// [Connection.Close] closes gracefully, [Connection.Abort] at once. Each
// Connection is in one of the RFC 9622 states Establishing, Established,
// Closing and Closed ([Connection.State], [ConnectionState]). The peer's
// end of stream half-closes a Connection: Receive then reports the end of
// the stream, Send still works, and the Connection is Closed once this
// side closes too (Close, or a Message sent with the Final property).
//
// For code written against the standard library, [Connection.NetConn],
// [Listener.NetListener] and [Dialer] adapt Connections and Listeners to
// net.Conn and net.Listener (so http.Server.Serve and
// http.Transport.DialContext work over gotaps).
//
// # Properties
//
// [TransportProperties] holds the Selection Properties (which protocols
// and paths may be used: [Require], [Prefer], [NoPreference], [Avoid],
// [Prohibit]), the initial Connection Properties and the default Message
// Properties, with the RFC 9622 defaults; [NewTransportProperties] takes
// the three profiles of RFC 9622 App. B.2 ([ReliableInorderStream],
// [ReliableMessage], [UnreliableDatagram]). Property names are the RFC's
// camelCase names as [Property] constants; [ParseProperty] also accepts
// kebab-case and the seed's names. Values are typed: a wrong type or an
// out-of-range value is a [*PropertyError]. A [MessageContext] overrides
// Message Properties for one Message; [Connection.SetProperty] and
// [Connection.GetProperties] change and read a Connection's.
//
// Everything a Preconnection is given is copied when it is created or
// used (call-by-value, RFC 9622 §1.1): changing a TransportProperties,
// endpoint or Preconnection afterwards never affects Connections already
// made from it.
//
// # Security
//
// [SecurityParameters] are the RFC 9622 §6.3 security parameters:
// [NewSecurityParameters] requires security (only TLS over TCP and QUIC
// are selected, and a secure attempt never falls back to plain text),
// [NewOpportunisticSecurityParameters] prefers it, and
// [NewDisabledSecurityParameters] never adds it. Their setters take the
// trusted CAs, the identities (both roles, or serverCertificate and
// clientCertificate), ALPN, the allowed TLS versions (a maximum below TLS
// 1.3 rules QUIC out), pinned server certificates, cipher suites,
// supported groups, the session cache's size and lifetime, and the trust
// verification and identity challenge callbacks; [SecurityParameters.Set]
// takes them by their RFC names. A value that cannot be honoured is never
// ignored: signatureAlgorithm and preSharedKey, which crypto/tls has no
// API for, a TLS 1.3 cipher suite (crypto/tls does not let one be chosen)
// or an unknown version make Initiate and Listen fail before any packet
// with a [*SecurityParameterError]. [SocketInfo] reads back what was
// negotiated (version, cipher suite, group, ALPN, resumption).
//
// # Framers
//
// A byte-stream protocol such as TCP does not preserve Message boundaries;
// a framer does (RFC 9622 §9.1.2, RFC 9623 §6). [Preconnection.AddFramer]
// adds one: [github.com/gotaps/gotaps/framers.NewLengthPrefix] (a 4-byte
// length before each Message), NewDelimiter (for example lines), or your
// own implementation of the framers.Framer interface. Framers added later
// run first on send and last on receive. Without a framer a Connection
// over TCP is a byte stream: Receive returns whatever bytes have arrived.
//
// # Events and handlers
//
// Every RFC 9622 event is delivered either to a blocking call or to a
// handler. The blocking calls return at their event (Initiate at Ready or
// EstablishmentError, Send at Sent, SendError or Expired, Receive at
// Received, ReceivedPartial or ReceiveError). Handlers, set on the
// Preconnection (for every Connection made from it) or on a Connection
// ([Connection.OnReady], [Connection.OnClosed],
// [Connection.OnConnectionError], [Connection.SendAsync],
// [Connection.ReceiveAsync], [Listener.OnConnectionReceived], ...), are
// called one at a time and in order per Connection, on a goroutine of
// gotaps; a handler that blocks delays that Connection's later events
// only. A panic in a handler ends only its Connection (a
// [*ConnectionError] wrapping a [*PanicError]). Every handler panic, also
// one that cannot end its Connection because it has ended already (in
// OnClosed, OnConnectionError, a late SendAsync handler, ...), goes to the
// System's [WithHandlerPanic] function, by default an Error log.
//
// # Errors
//
// Each RFC 9622 error event has a type: [*EstablishmentError] (with every
// failed attempt), [*ConnectionError], [*SendError], [*ReceiveError],
// [*CloneError]; invalid input gives a [*PropertyError], an
// [*EndpointError] or a [*SecurityParameterError], and a server chain that
// matches no pinned certificate a [*CertificatePinError]. They carry an [ErrorReason] (RFC 9623 Appendix B) and
// unwrap to sentinel errors ([ErrClosed], which is net.ErrClosed,
// [ErrExpired], [ErrUnfulfilled], [ErrEstablishmentTimeout], ...) and to
// the standard library's errors where one fits (context.DeadlineExceeded,
// *net.OpError, syscall.ECONNREFUSED): test them with errors.Is and
// errors.As.
//
// # Systems
//
// A [System] is one gotaps runtime: an actor system (protoactor-go) in
// which every Listener, connection group and Connection is an actor.
// Preconnections use the [DefaultSystem] unless given [WithSystem]. Tests
// and embedders create their own with [NewSystem] and release it with
// [System.Shutdown], which closes everything the System owns and waits
// until none of its goroutines is left. [WithLogger] sends its logs to a
// log/slog Logger; [WithTraceWriter] and [WithTracer] report every state
// change, racing event and message event (the examples/tapstrace command
// draws a trace as an SVG timeline).
//
// # Names
//
// gotaps follows the RFC 9622 names in Go case. The seed implementation
// (NEATPy) used older draft names; they map as follows:
//
//	Seed                                   RFC 9622                     gotaps
//	Preconnection(local, remote, props,    NewPreconnection             NewPreconnection(WithLocalEndpoint,
//	  security_needed, unfulfilled_handler)                               WithRemoteEndpoint, WithTransportProperties,
//	                                                                      WithSecurityNeeded, WithUnfulfilledHandler)
//	LocalEndpoint / RemoteEndpoint         LocalEndpoint, RemoteEndpoint NewLocalEndpoint, NewRemoteEndpoint
//	with_address / with_hostname           WithIPAddress / WithHostName  WithIPAddress / WithHostName
//	with_port / with_interface             WithPort / WithInterface      WithPort / WithInterface
//	TransportProperties(profile)           TransportProperties, profiles NewTransportProperties(ReliableMessage)
//	add / require / prefer / ignore /      Set / Require / Prefer /      Set / Require / Prefer / NoPreference
//	  avoid / prohibit / default             NoPreference / Avoid /        (alias Ignore) / Avoid / Prohibit /
//	                                         Prohibit                      Default
//	PreferenceLevel                        Preference                    Preference
//	add_framer                             AddFramer                     Preconnection.AddFramer
//	initiate(timeout)                      Initiate                      Preconnection.Initiate(ctx)
//	initiate_with_send                     InitiateWithSend              Preconnection.InitiateWithSend
//	listen                                 Listen                        Preconnection.Listen -> *Listener
//	–                                      Rendezvous + RendezvousDone   Preconnection.Rendezvous(ctx) -> *Connection
//	–                                      Resolve                       Preconnection.Resolve(ctx)
//	–                                      AddRemote (Preconnection)     Preconnection.AddRemote
//	–                                      LocalEndpoint WithStunServer  LocalEndpoint.WithStunServer
//	–                                      WithMulticastGroupIP /        RemoteEndpoint.WithMulticastGroupIP /
//	                                         WithHopLimit (Remote)         WithHopLimit (Initiate: send only)
//	–                                      WithAnySourceMulticastGroupIP LocalEndpoint.WithAnySourceMulticastGroupIP,
//	                                         / WithSingleSource... (Local) WithSingleSourceMulticastGroupIP (Listen)
//	Listener (ConnectionReceived)          ConnectionReceived            Listener.Accept, OnConnectionReceived
//	set_new_connection_limit / stop        SetNewConnectionLimit / Stop  Listener.SetNewConnectionLimit / Stop
//	send(data, sent_handler, ctx, eom)     Send + Sent/Expired/SendError Connection.Send, SendPartial, SendAsync
//	receive(handler, min_incomplete,       Receive + Received /          Connection.Receive(ctx,
//	  max_length)                            ReceivedPartial/ReceiveError  MinIncompleteLength, MaxLength),
//	                                                                       ReceiveAsync
//	batch                                  StartBatch / EndBatch         Connection.Batch(func())
//	clone                                  Clone                         Connection.Clone
//	close / abort                          Close / Abort                 Connection.Close / Abort
//	–                                      CloseGroup / AbortGroup       Connection.CloseGroup / AbortGroup
//	get_properties / set_property          GetProperties / SetProperty   Connection.GetProperties / SetProperty
//	–                                      AddRemote / RemoveRemote /    Connection.AddRemote / RemoveRemote /
//	                                         AddLocal / RemoveLocal        AddLocal / RemoveLocal, Endpoints
//	HANDLE_STATE_READY                     Ready                         OnReady
//	HANDLE_STATE_CONNECTION_ERROR          ConnectionError               OnConnectionError, *ConnectionError
//	HANDLE_STATE_CLOSED                    Closed                        OnClosed, Connection.Done
//	unfulfilled_handler                    EstablishmentError            WithUnfulfilledHandler, *EstablishmentError
//	ConnectionState ESTABLISHING..CLOSED   Establishing..Closed          StateEstablishing..StateClosed
//	MessageContext ("idempotent")          MessageContext                NewMessageContext().SafelyReplayable
//	security_needed                        SecurityParameters            NewSecurityParameters and variants
//
// Property names map the same way (the seed's kebab-case names are
// accepted by [ParseProperty]); the constants' comments give each
// property's type and default.
package taps
