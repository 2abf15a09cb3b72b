package api

// Plan is what loading a configuration file would change (`bgpgw plan`),
// or what a reload changed (`bgpgw reload`). Announcements are predicted
// assuming every session is (or comes back) up and every peer sends the
// routes it sends now; Assumes says so in words.
type Plan struct {
	File    string `json:"file,omitempty"`
	Changed bool   `json:"changed"`
	// Invalid lists why the file cannot be loaded, one entry per bad key
	// ("bgp.asn: ..."), or what only a restart applies; nothing else is
	// set then.
	Invalid  []string   `json:"invalid,omitempty"`
	Peers    []PlanPeer `json:"peers"`
	Tunnels  []PlanItem `json:"tunnels"` // IPsec tunnels added, removed or rebuilt
	BFD      []PlanItem `json:"bfd"`
	Checks   []PlanItem `json:"checks"`
	Routes   PlanRoutes `json:"routes"` // kernel routes toward the tunnels
	Settings []string   `json:"settings"`
	Assumes  string     `json:"assumes,omitempty"`
	// Errors, from a reload, are what it applied the file but could not
	// bring about (a session, a BFD session).
	Errors []string `json:"errors,omitempty"`
}

// PlanPeer is what changes for one BGP peer.
type PlanPeer struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Session is "added", "removed" or "reset" (a setting changed: the
	// session is re-created); empty when it is not touched.
	Session  string       `json:"session,omitempty"`
	Why      string       `json:"why,omitempty"`
	Announce []PlanPrefix `json:"announce,omitempty"` // newly announced
	Withdraw []string     `json:"withdraw,omitempty"`
	Update   []PlanPrefix `json:"update,omitempty"` // announced again with other attributes
	// After is everything announced to the peer afterwards.
	After []PlanPrefix `json:"after"`
}

// PlanPrefix is one announcement with its attributes.
type PlanPrefix struct {
	Prefix      string   `json:"prefix"`
	Prepend     int      `json:"prepend,omitempty"`
	MED         *uint32  `json:"med,omitempty"`
	Communities []string `json:"communities,omitempty"`
}

// PlanItem is one thing added, removed or changed.
type PlanItem struct {
	Name   string `json:"name"`
	Change string `json:"change"`
	Why    string `json:"why,omitempty"`
}

// PlanRoutes are the kernel routes added and removed.
type PlanRoutes struct {
	Add    []Route `json:"add,omitempty"`
	Remove []Route `json:"remove,omitempty"`
}
