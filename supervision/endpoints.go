package supervision

import "errors"

// ErrEndpointRemoved is what an *EndpointRemovedError unwraps to.
var ErrEndpointRemoved = errors.New("endpoint in use removed")

// EndpointRemovedError says that the endpoint a connection was using was
// removed (RFC 9622 §7.5: RemoveRemote, RemoveLocal). The path must change:
// a connection with a re-establishment policy and remote endpoints left
// switches to them (this is the error of its Reestablishing event); any
// other is aborted (the cause of its ConnectionError). It unwraps to
// ErrEndpointRemoved.
type EndpointRemovedError struct {
	// Endpoint names the removed endpoint ("host:port", or a path).
	Endpoint string
	// Local: a local endpoint was removed; otherwise a remote one.
	Local bool
	// Reason says what became of the connection: that it switches, or
	// why it could not.
	Reason string
}

func (e *EndpointRemovedError) Error() string {
	kind := "remote"
	if e.Local {
		kind = "local"
	}
	s := kind + " endpoint " + e.Endpoint + " in use was removed"
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// Unwrap returns ErrEndpointRemoved.
func (e *EndpointRemovedError) Unwrap() error { return ErrEndpointRemoved }
