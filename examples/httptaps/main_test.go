package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/gotaps/gotaps/taps"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// get fetches url and returns the body and whether the connection was
// reused (keep-alive).
func get(t *testing.T, ctx context.Context, c *http.Client, url string) (string, bool) {
	t.Helper()
	reused := false
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b), reused
}

func TestServeAndFetch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sys := taps.NewSystem()
	defer func() { require.NoError(t, sys.Shutdown(ctx)) }()

	s, err := Start(ctx, sys, "127.0.0.1:0")
	require.NoError(t, err)
	url := "http://" + s.Addr().String() + "/"

	// A plain net/http client (the kernel's TCP, no gotaps on this side).
	plain := &http.Client{Transport: &http.Transport{}}
	for i := range 2 {
		body, reused := get(t, ctx, plain, url)
		require.Equal(t, Greeting+"\n", body)
		require.Equal(t, i > 0, reused, "keep-alive over the gotaps server")
	}

	// A client whose connections are gotaps Connections.
	tc := NewClient(sys)
	for i := range 3 {
		body, reused := get(t, ctx, tc, url)
		require.Equal(t, Greeting+"\n", body)
		require.Equal(t, i > 0, reused, "keep-alive over the gotaps client")
	}
	// a request with a body, and a 404
	resp, err := tc.Post(url+"nothing", "text/plain", strings.NewReader("payload"))
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusNotFound, resp.StatusCode)

	// Without keep-alive: every request closes its connection.
	nk := NewClient(sys)
	nk.Transport.(*http.Transport).DisableKeepAlives = true
	for range 2 {
		body, reused := get(t, ctx, nk, url)
		require.Equal(t, Greeting+"\n", body)
		require.False(t, reused)
	}

	plain.CloseIdleConnections()
	tc.CloseIdleConnections()
	require.NoError(t, s.Shutdown(ctx))
}

func TestFetchCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sys := taps.NewSystem()
	defer func() { require.NoError(t, sys.Shutdown(ctx)) }()
	s, err := Start(ctx, sys, "127.0.0.1:0")
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, fetch(ctx, "http://"+s.Addr().String()+"/", &out))
	require.Equal(t, Greeting+"\n", out.String())
	require.Error(t, fetch(ctx, "http://"+s.Addr().String()+"/missing", &out))
	require.NoError(t, s.Shutdown(ctx))
}
