package actors

import (
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gotaps/gotaps/messages"
)

// Race cache bounds. An entry is a success record of one stack to one
// address (RFC 9623 §9.2 lets those live hours); the size bound keeps a
// program that contacts many hosts from growing it without limit.
const (
	raceCacheTTL = 10 * time.Minute
	raceCacheMax = 1024
)

// raceCache remembers, per set of remote endpoints, which attempt won the
// last race (RFC 9623 §9, RFC 8305 §4 "historical data"): the next Initiate
// to the same remotes tries it first. A failure of every attempt forgets
// it. It is safe for concurrent use.
//
// It is not split per network (RFC 8305 §4 wants that): gotaps does not
// track network changes yet.
type raceCache struct {
	mu sync.Mutex
	m  map[string]raceWinner
}

// raceWinner is one cache entry.
type raceWinner struct {
	stack  string
	remote netip.AddrPort
	path   string // a Unix domain socket (remote is then zero)
	at     time.Time
}

// lookup returns the winner stored under key, if fresh.
func (c *raceCache) lookup(key string, now time.Time) (raceWinner, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.m[key]
	if ok && now.Sub(w.at) > raceCacheTTL {
		delete(c.m, key)
		return raceWinner{}, false
	}
	return w, ok
}

// store records the winner of a race under key.
func (c *raceCache) store(key string, w raceWinner) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]raceWinner)
	}
	if _, ok := c.m[key]; !ok && len(c.m) >= raceCacheMax {
		c.evictLocked(w.at)
	}
	c.m[key] = w
}

// forget drops key.
func (c *raceCache) forget(key string) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}

// evictLocked drops expired entries, or the oldest one when none expired.
func (c *raceCache) evictLocked(now time.Time) {
	var oldest string
	var oldestAt time.Time
	for k, w := range c.m {
		if now.Sub(w.at) > raceCacheTTL {
			delete(c.m, k)
			continue
		}
		if oldest == "" || w.at.Before(oldestAt) {
			oldest, oldestAt = k, w.at
		}
	}
	if len(c.m) >= raceCacheMax {
		delete(c.m, oldest)
	}
}

// cacheFor returns the race cache of s.
func cacheFor(s *System) *raceCache { return &s.raceCache }

// raceCacheKey is the cache key of a configuration: what makes its
// candidates, in any order: its remote endpoints as the application named
// them (host or address, port, interface, service: a service's SRV
// records give other targets than the host name's own addresses at its
// IANA port; protocol; a multicast group's source; whether its HTTPS
// records are looked up (httpsName: their TargetNames' addresses are
// candidates too); a Unix domain socket's path), its local endpoints
// (address or host name, port, interface), its path preferences (interface, pvd, useTemporaryLocalAddress) and its
// ranked stacks. Two configurations that share a key have the same
// candidates, so a winner cached for one is among the other's (a winner
// that is not makes the race wait for its address, up to the resolution
// delay). It is "" (no caching) when the isolateSession property is true
// (RFC 9622 §8.1.5) or there is no remote.
func raceCacheKey(cfg *messages.ConnectionConfig) string {
	if isolated(cfg) || len(cfg.Remotes) == 0 {
		return ""
	}
	keys := make([]string, 0, len(cfg.Remotes)+len(cfg.Locals))
	for _, r := range cfg.Remotes {
		if r.Path != "" {
			keys = append(keys, "unix:"+r.Path)
			continue
		}
		k := endpointLabel(r) + "%" + r.Interface + "/" + r.Service + "/" + r.Protocol
		if r.Multicast {
			k += "/multicast:" + r.MulticastSource
		}
		if httpsName(cfg, r) != "" {
			k += "/https" // the service endpoints its HTTPS records name are candidates too
		}
		keys = append(keys, k)
	}
	for _, l := range cfg.Locals {
		if l.Path == "" { // an Initiate does not bind to a path
			keys = append(keys, "local:"+endpointLabel(l)+"%"+l.Interface+"/"+l.Service)
		}
	}
	sort.Strings(keys)
	// the ranked stacks are part of the key: a cached winner never
	// overrides a preference the application changed
	names := make([]string, 0, len(cfg.Stacks))
	for _, st := range cfg.Stacks {
		names = append(names, st.Name())
	}
	return strings.Join(keys, ",") + "|" + strings.Join(names, ",") + "|" + pathPrefsKey(cfg.Properties)
}

// pathPrefsKey names the path preferences of props (pathPlanOf's), which
// choose the paths of the candidates: "" when there are none.
func pathPrefsKey(props *messages.Properties) string {
	vals := props.GetValues()
	var parts []string
	for _, name := range []string{"interface", "pvd"} {
		prefs := vals[name].GetNamedPreferences().GetPreferences()
		if len(prefs) == 0 {
			continue
		}
		named := make([]string, 0, len(prefs))
		for k, v := range prefs {
			named = append(named, k+"="+strconv.Itoa(int(v)))
		}
		sort.Strings(named)
		parts = append(parts, name+":"+strings.Join(named, ";"))
	}
	if v, ok := vals["useTemporaryLocalAddress"]; ok {
		parts = append(parts, "useTemporaryLocalAddress:"+strconv.Itoa(int(v.GetPreference())))
	}
	return strings.Join(parts, ",")
}

// isolated reports whether cfg asks for isolateSession.
func isolated(cfg *messages.ConnectionConfig) bool {
	if cfg.Properties == nil {
		return false
	}
	return cfg.Properties.GetValues()["isolateSession"].GetBoolValue()
}
