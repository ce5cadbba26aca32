package actors

import (
	"fmt"
	"testing"

	"github.com/gotaps/gotaps/messages"
	"github.com/stretchr/testify/require"
)

// orderItem is a complete framed message with id, msgPriority prio and
// msgOrdered ordered; final marks it final; part makes it a part of an
// unfinished message instead (never moved).
type orderItem struct {
	id      uint64
	prio    int64
	ordered bool
	final   bool
	part    bool
	noProps bool
}

func (o orderItem) writeItem() writeItem {
	m := &messages.SendMessage{MessageID: o.id, EndOfMessage: !o.part}
	if !o.noProps {
		m.Props = &messages.MessageProps{Priority: o.prio, Ordered: o.ordered, Final: o.final}
	}
	return writeItem{send: &outSend{msg: m, framed: true}}
}

// TestOrderByPriorityKeepsOrderedMessagesInOrder: msgPriority moves only
// the messages whose msgOrdered is false (RFC 9622 §9.1.3.3: the Messages
// with it true are delivered in the order they were submitted); such a
// message may go ahead of ordered ones, which keep their order among
// themselves; a final message stays behind the others; nothing moves
// across a part of an unfinished message.
func TestOrderByPriorityKeepsOrderedMessagesInOrder(t *testing.T) {
	O := func(id uint64, prio int64) orderItem { return orderItem{id: id, prio: prio, ordered: true} }
	U := func(id uint64, prio int64) orderItem { return orderItem{id: id, prio: prio} }
	for i, tt := range []struct {
		name  string
		items []orderItem
		want  []uint64
	}{
		{"ordered only: submission order", []orderItem{O(1, 200), O(2, 150), O(3, 10), O(4, 1)}, []uint64{1, 2, 3, 4}},
		{"no properties: kept in order", []orderItem{{id: 1, noProps: true}, U(2, 100), {id: 3, noProps: true}}, []uint64{1, 2, 3}},
		{"unordered only: by priority, stable", []orderItem{U(1, 5), U(2, 1), U(3, 3), U(4, 1)}, []uint64{2, 4, 3, 1}},
		{"unordered final stays last", []orderItem{U(1, 5), {id: 2, final: true}, U(3, 1)}, []uint64{3, 1, 2}},
		{"ordered final stays last", []orderItem{U(1, 5), O(2, 7), {id: 3, ordered: true, final: true}, U(4, 300)}, []uint64{1, 2, 4, 3}},
		{"unordered goes ahead of ordered ones", []orderItem{O(1, 200), O(2, 1), U(3, 100), U(4, 300)}, []uint64{3, 1, 2, 4}},
		{"equal ranks: the one sent first", []orderItem{O(1, 100), U(2, 100), U(3, 100), O(4, 100)}, []uint64{1, 2, 3, 4}},
		{"nothing crosses a part", []orderItem{O(1, 200), U(2, 300), {id: 3, part: true}, U(4, 1), O(5, 0)}, []uint64{1, 2, 3, 5, 4}},
	} {
		batch := make([]writeItem, len(tt.items))
		for k, it := range tt.items {
			batch[k] = it.writeItem()
		}
		orderByPriority(batch)
		got := make([]uint64, len(batch))
		for k, w := range batch {
			got[k] = w.send.msg.MessageID
		}
		require.Equal(t, tt.want, got, fmt.Sprintf("#%d %s", i, tt.name))
	}
}
