package taps

import (
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestServicePortByProtocol: a service name is looked up for the transport
// of the endpoint's protocol first, then for the other one, so that a name
// registered for UDP alone names its port too.
func TestServicePortByProtocol(t *testing.T) {
	udpOnly := "ntp" // 123/udp in /etc/services
	if _, err := net.LookupPort("tcp", udpOnly); err == nil {
		t.Skip("this host's /etc/services lists ntp for TCP too")
	}
	want, err := net.LookupPort("udp", udpOnly)
	if err != nil {
		t.Skip("this host's /etc/services has no ntp entry")
	}
	tests := []struct {
		service, protocol string
		port              int // 0: an error
	}{
		{"https", "", 443},
		{"https", "quic", 443},
		{"domain", "udp", 53},
		{udpOnly, "", want},
		{udpOnly, "udp", want},
		{udpOnly, "tcp", want},
		{"no-such-service-gotaps", "", 0},
	}
	for _, tt := range tests {
		p, err := servicePort(tt.service, tt.protocol)
		if tt.port == 0 {
			require.Error(t, err, "%s/%s", tt.service, tt.protocol)
			continue
		}
		require.NoError(t, err, "%s/%s", tt.service, tt.protocol)
		require.Equal(t, tt.port, p, "%s/%s", tt.service, tt.protocol)
	}

	// through an endpoint, as an Initiate converts it
	m, err := NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithService(udpOnly).e.toMessage(true, true)
	require.NoError(t, err)
	require.EqualValues(t, want, m.Port)
	_, err = NewRemoteEndpoint().WithIPAddress("127.0.0.1").WithService("no-such-service-gotaps").e.toMessage(true, true)
	var ee *EndpointError
	require.ErrorAs(t, err, &ee)
}
