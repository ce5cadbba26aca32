package framers

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPrefixAbortMessageDropsParts: AbortMessage (SendAborter) on a
// length-prefix or fixed-header framer drops the buffered parts of a
// partial message that failed before its last part: nothing of it goes
// down, and the next message is framed on its own. With no message open it
// does nothing.
func TestPrefixAbortMessageDropsParts(t *testing.T) {
	fh, err := NewFixedHeader(4, 0, 4, WithMaxMessageSize(8))
	require.NoError(t, err)
	for _, f := range []Framer{NewLengthPrefix(WithMaxMessageSize(8)), fh} {
		r, inst := newRecorded(0)
		ab, ok := f.(SendAborter)
		require.True(t, ok, "%T", f)
		ab.AbortMessage(inst) // nothing open
		f.NewSentMessage(inst, []byte("abcd"), nil, false)
		f.NewSentMessage(inst, []byte("efgh"), nil, false)
		ab.AbortMessage(inst)
		require.Empty(t, r.sent, "%T: nothing of the aborted message goes down", f)
		// the next message starts afresh: the aborted parts neither join it
		// nor count against its maximum
		f.NewSentMessage(inst, []byte("xy"), nil, false)
		f.NewSentMessage(inst, []byte("z"), nil, true)
		require.NoError(t, r.err(), "%T", f)
		r2, inst2 := newRecorded(0)
		feed(f, inst2, bytewise(r.wire()), true)
		require.Equal(t, []string{"xyz"}, strs(r2.messages()), "%T", f)
	}
}

// TestDelimiterAbortMessage: a Delimiter passes parts down as they come
// and cannot take them back: aborting a partial message after some of it
// went down fails the connection (ErrMessageAbandoned) rather than let the
// peer read those bytes as the start of the next message; aborting one of
// which nothing went down (or none) does nothing.
func TestDelimiterAbortMessage(t *testing.T) {
	f := NewLines()
	r, inst := newRecorded(0)
	f.AbortMessage(inst)
	f.NewSentMessage(inst, nil, nil, false) // an empty part sends nothing
	f.AbortMessage(inst)
	f.NewSentMessage(inst, []byte("whole"), nil, true)
	f.AbortMessage(inst) // the message ended: nothing open
	require.NoError(t, r.err())
	require.Equal(t, "whole\n", string(r.wire()))

	f.NewSentMessage(inst, []byte("ab"), nil, false)
	f.AbortMessage(inst)
	require.ErrorIs(t, r.err(), ErrMessageAbandoned)
	require.Equal(t, "whole\nab", string(r.wire()), "no separator after the abandoned part")
}
