package taps

import (
	"time"

	"github.com/gotaps/gotaps/messages"
)

// This file holds the conversions between the public types and the actor
// vocabulary that are not about property encoding (convert_props.go).

// messageDefaults returns the default message properties of tp.
func messageDefaults(tp *TransportProperties) (*messages.MessageProps, error) {
	mp := &messages.MessageProps{ChecksumLen: -1}
	if err := applyMessageProps(mp, func(p Property) (any, bool) {
		if p == MsgCapacityProfile {
			return tp.lookup(p) // explicit only: absent follows connCapacityProfile
		}
		return tp.Get(p)
	}); err != nil {
		return nil, err
	}
	mp.ReliableSet, mp.OrderedSet = tp.IsSet(MsgReliable), tp.IsSet(MsgOrdered)
	return mp, nil
}

// applyMessageProps copies the message properties get returns into mp.
func applyMessageProps(mp *messages.MessageProps, get func(Property) (any, bool)) error {
	if v, ok := get(MsgLifetime); ok {
		if d, ok := v.(time.Duration); ok {
			mp.Lifetime = d
		} else {
			mp.Lifetime = 0
		}
	}
	if v, ok := get(MsgPriority); ok {
		if n, ok := v.(int64); ok {
			mp.Priority = n
		}
	}
	if v, ok := get(MsgOrdered); ok {
		if b, ok := v.(bool); ok {
			mp.Ordered = b
		}
	}
	if v, ok := get(SafelyReplayable); ok {
		if b, ok := v.(bool); ok {
			mp.SafelyReplayable = b
		}
	}
	if v, ok := get(Final); ok {
		if b, ok := v.(bool); ok {
			mp.Final = b
		}
	}
	if v, ok := get(MsgChecksumLen); ok {
		if n, ok := v.(int64); ok {
			mp.ChecksumLen = n
		} else {
			mp.ChecksumLen = -1
		}
	}
	if v, ok := get(MsgReliable); ok {
		if b, ok := v.(bool); ok {
			mp.Reliable = b
		}
	}
	if v, ok := get(MsgCapacityProfile); ok {
		if c, ok := v.(CapacityProfile); ok {
			mp.DSCP = c.DSCP()
			mp.DSCPSet = true
		}
	}
	if v, ok := get(NoFragmentation); ok {
		if b, ok := v.(bool); ok {
			mp.NoFragmentation = b
		}
	}
	if v, ok := get(NoSegmentation); ok {
		if b, ok := v.(bool); ok {
			mp.NoSegmentation = b
		}
	}
	return nil
}

// resolveMessage returns the effective properties of one message: mc's
// values over the connection's defaults.
func resolveMessage(mc *MessageContext, defaults *messages.MessageProps) (*messages.MessageProps, error) {
	if mc == nil {
		return defaults, nil
	}
	if err := mc.Err(); err != nil {
		return nil, err
	}
	mp := *defaults
	err := applyMessageProps(&mp, func(p Property) (any, bool) {
		if !mc.IsSet(p) {
			return nil, false
		}
		return mc.Get(p)
	})
	mp.ReliableSet = mp.ReliableSet || mc.IsSet(MsgReliable)
	mp.OrderedSet = mp.OrderedSet || mc.IsSet(MsgOrdered)
	return &mp, err
}
