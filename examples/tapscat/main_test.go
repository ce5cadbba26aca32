package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestUsageErrors checks that command-line mistakes give exit status 2 and
// one clear line on stderr, before any network activity.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{}, "want HOST PORT, got 0 argument(s)"},
		{[]string{"-l"}, "want [ADDR] PORT after -l"},
		{[]string{"a", "b", "c"}, "want HOST PORT, got 3"},
		{[]string{"--framer", "xml", "127.0.0.1", "1"}, `--framer "xml": want none, length or line`},
		{[]string{"--count", "-1", "127.0.0.1", "1"}, "--count -1"},
		{[]string{"--bogus", "127.0.0.1", "1"}, "flag provided but not defined: -bogus"},
		{[]string{"--profile", "fast", "127.0.0.1", "1"},
			`--profile: invalid property value: unknown profile "fast": want reliable-inorder-stream, reliable-message or unreliable-datagram`},
		{[]string{"--require", "teleportation", "127.0.0.1", "1"}, "--require teleportation"},
		{[]string{"--prefer", "reliability,nonsense", "127.0.0.1", "1"}, "--prefer nonsense"},
		{[]string{"--avoid", "connTimeout", "127.0.0.1", "1"}, "--avoid connTimeout"},
		{[]string{"--cert", "c.pem", "127.0.0.1", "1"}, "--cert and --key go together"},
		{[]string{"--ca", "/nonexistent/ca.pem", "127.0.0.1", "1"}, "--ca"},
		{[]string{"127.0.0.1", "99999"}, `bad port "99999"`},
		{[]string{"127.0.0.1", "0"}, "port 0: want the peer's port"},
		{[]string{"--protocols", "sctp", "127.0.0.1", "1"}, `unknown protocol "sctp": want tcp, tls, quic, udp or udplite`},
		{[]string{"--protocols", "tcp,", "127.0.0.1", "1"}, `unknown protocol ""`},
		{[]string{"--protocols", "unix", "127.0.0.1", "1"}, `unknown protocol "unix"`},
		{[]string{"--require", "", "127.0.0.1", "1"}, "-require: want a property name"},
		{[]string{"--prohibit", ",", "127.0.0.1", "1"}, "-prohibit: want a property name"},
		{[]string{"--tls", "--opportunistic", "127.0.0.1", "1"}, "--tls requires security, --opportunistic does not"},
	}
	for i, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tt.args, strings.NewReader(""), &stdout, &stderr)
		require.Equal(t, exitUsage, code, "#%d %q: stderr %q", i, tt.args, stderr.String())
		require.Contains(t, stderr.String(), tt.want, "#%d %q", i, tt.args)
		require.True(t, strings.HasPrefix(stderr.String(), "tapscat: "), "#%d: %q", i, stderr.String())
		require.Equal(t, 1, strings.Count(stderr.String(), "\n"), "#%d: one line: %q", i, stderr.String())
		require.Empty(t, stdout.String(), "#%d", i)
	}
}

// TestParseArgsInterleaved checks that flags may follow the positional
// arguments and that "--" ends the flags.
func TestParseArgsInterleaved(t *testing.T) {
	var stderr bytes.Buffer
	c, err := parseArgs([]string{"-l", "9000", "--echo", "--framer=line", "--require", "reliability", "--prefer", "keepAlive,softErrorNotify"}, &stderr)
	require.NoError(t, err)
	require.True(t, c.listen)
	require.True(t, c.echo)
	require.Equal(t, "line", c.framer)
	require.Empty(t, c.host)
	require.Equal(t, "9000", c.port)
	require.Len(t, c.prefs, 3)

	c, err = parseArgs([]string{"--count", "2", "--", "[::1]", "80"}, &stderr)
	require.NoError(t, err)
	require.Equal(t, "::1", c.host)
	require.Equal(t, "80", c.port)
	require.Equal(t, 2, c.count)

	c, err = parseArgs([]string{"--alpn", "h2,http/1.1", "example.org", "https"}, &stderr)
	require.NoError(t, err)
	require.True(t, c.tls, "a TLS flag implies --tls")
	sec, err := c.security()
	require.NoError(t, err)
	require.NotNil(t, sec)
	_, _, err = c.numberedPort()
	require.NoError(t, err, "a service name is a port")
}

// TestTransportPropertiesFromFlags checks that --profile and the
// preference flags reach the TransportProperties, in order.
func TestTransportPropertiesFromFlags(t *testing.T) {
	var stderr bytes.Buffer
	c, err := parseArgs([]string{"--profile", "reliable-message", "--prefer", "preserve-msg-boundaries",
		"--avoid", "keepAlive", "--require", "keepAlive", "--prohibit", "zeroRttMsg", "h", "1"}, &stderr)
	require.NoError(t, err)
	tp, err := c.transportProperties()
	require.NoError(t, err)
	require.Equal(t, "Prefer", tp.Preference("preserveMsgBoundaries").String(), "the flag overrides the profile")
	require.Equal(t, "Require", tp.Preference("keepAlive").String(), "the last flag wins")
	require.Equal(t, "Prohibit", tp.Preference("zeroRttMsg").String())
	require.Equal(t, "Require", tp.Preference("reliability").String())
}

// TestHelp checks that -h prints the usage and exits 0.
func TestHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.Equal(t, exitOK, run(context.Background(), []string{"-h"}, nil, &stdout, &stderr))
	require.Contains(t, stderr.String(), "tapscat -l [flags] [ADDR] PORT")
	require.Contains(t, stderr.String(), "-framer")
}

// TestProtocolsImply checks what --protocols implies when every stack it
// names needs it (otherwise none could be selected): security for tls and
// quic, the unreliable-datagram profile for udp and udplite.
func TestProtocolsImply(t *testing.T) {
	var stderr bytes.Buffer
	c, err := parseArgs([]string{"--protocols", "quic, tls", "h", "1"}, &stderr)
	require.NoError(t, err)
	require.Equal(t, []string{"quic", "tls"}, c.protocols)
	require.True(t, c.tls)
	require.Empty(t, c.profile)

	c, err = parseArgs([]string{"--protocols", "tcp,tls", "h", "1"}, &stderr)
	require.NoError(t, err)
	require.False(t, c.tls, "tcp needs no security")

	c, err = parseArgs([]string{"--protocols", "udp", "h", "1"}, &stderr)
	require.NoError(t, err)
	require.False(t, c.tls)
	require.Equal(t, "unreliable-datagram", c.profile)
	tp, err := c.transportProperties()
	require.NoError(t, err)
	require.NotEqual(t, "Require", tp.Preference("reliability").String())

	c, err = parseArgs([]string{"--protocols", "udplite", "--require", "fullChecksumSend", "h", "1"}, &stderr)
	require.NoError(t, err)
	tp, err = c.transportProperties()
	require.NoError(t, err)
	require.Equal(t, "Prefer", tp.Preference("fullChecksumRecv").String(), "udplite gives partial coverage")
	require.Equal(t, "Require", tp.Preference("fullChecksumSend").String(), "the flags win")

	c, err = parseArgs([]string{"--protocols", "udp", "--profile", "reliable-message", "h", "1"}, &stderr)
	require.NoError(t, err)
	require.Equal(t, "reliable-message", c.profile, "an explicit --profile stays")
}
