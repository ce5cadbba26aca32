package taps

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// refusedSendRecs returns connection c's send_error records and the group
// id its state records carry.
func refusedSendRecs(t *testing.T, tl *traceLog, c *Connection) (sendErrs []*TraceRecord, group uint64) {
	t.Helper()
	for _, r := range tl.of(c.ID()) {
		switch r.Kind {
		case "send_error":
			sendErrs = append(sendErrs, r)
		case "state":
			group = r.GroupID
		}
	}
	require.NotZero(t, group, "the connection's state records carry its group")
	return sendErrs, group
}

// TestTraceRefusedSendAsyncQueueFull: a SendAsync refused because the send
// queue is full gets a SendError (ErrSendQueueFull) and, as every other
// SendError, a send_error record of its connection and group, naming its
// message and the cause. Inside Batch nothing is written, so the queue
// holds exactly what SendAsync accepted.
func TestTraceRefusedSendAsyncQueueFull(t *testing.T) {
	var tl traceLog
	sys := newTestSystem(t, WithTracer(tl.add))
	c, err := NewPreconnection(WithSystem(sys), WithSendBuffer(1024), WithRemoteEndpoint(remote(drainListener(t)))).Initiate(testCtx(t))
	require.NoError(t, err)
	results := make(chan error, 2)
	c.Batch(func() {
		c.SendAsync(make([]byte, 1024), nil, func(_ *Connection, err error) { results <- err })
		c.SendAsync([]byte{1}, nil, func(_ *Connection, err error) { results <- err })
	})
	var refused error
	for range 2 {
		select {
		case err := <-results:
			if err != nil {
				require.Nil(t, refused, "one SendAsync refused")
				refused = err
			}
		case <-testCtx(t).Done():
			t.Fatal("a SendAsync handler was not called")
		}
	}
	require.ErrorIs(t, refused, ErrSendQueueFull)
	c.Abort()
	<-c.Done()
	sendErrs, group := refusedSendRecs(t, &tl, c)
	require.Len(t, sendErrs, 1, "one send_error record, for the refused SendAsync:\n%s", dumpRecs(tl.of(c.ID())))
	r := sendErrs[0]
	require.Equal(t, "SendError", r.Event)
	require.Equal(t, group, r.GroupID)
	require.NotZero(t, r.MessageID)
	require.Contains(t, r.Error, ErrSendQueueFull.Error(), "the record names the cause")
}

// TestTraceRefusedSendAsyncClosing: a SendAsync refused because the
// connection is closing (or has closed), and a blocking Send refused so,
// have their send_error records too, each with its own message id.
func TestTraceRefusedSendAsyncClosing(t *testing.T) {
	var tl traceLog
	sys := newTestSystem(t, WithTracer(tl.add))
	c, err := NewPreconnection(WithSystem(sys), WithRemoteEndpoint(remote(drainListener(t)))).Initiate(testCtx(t))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	refused := make(chan error, 1)
	c.SendAsync([]byte("late"), nil, func(_ *Connection, err error) { refused <- err })
	var se *SendError
	select {
	case err := <-refused:
		require.ErrorAs(t, err, &se)
	case <-testCtx(t).Done():
		t.Fatal("the SendAsync handler was not called")
	}
	<-c.Done()
	require.ErrorAs(t, c.Send(testCtx(t), []byte("later"), nil), &se)
	sendErrs, group := refusedSendRecs(t, &tl, c)
	require.Len(t, sendErrs, 2, "a send_error record for each refused send:\n%s", dumpRecs(tl.of(c.ID())))
	for _, r := range sendErrs {
		require.Equal(t, "SendError", r.Event)
		require.Equal(t, group, r.GroupID)
		require.NotZero(t, r.MessageID)
		require.NotEmpty(t, r.Error)
	}
	require.NotEqual(t, sendErrs[0].MessageID, sendErrs[1].MessageID)
}
