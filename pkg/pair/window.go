package pair

// Window accepts a message only if it is newer than every message accepted
// before from the same sender: a higher epoch (the sender restarted), or
// the same epoch and a higher Seq. The zero Window accepts any first
// message. A Window is not safe for concurrent use.
type Window struct {
	seen  bool
	epoch uint64
	seq   uint64
}

// Accept reports whether m is newer than every message accepted before and
// if so records it. False means old or repeated: count it as a replay.
func (w *Window) Accept(m Message) bool {
	if w.seen && (m.Epoch < w.epoch || m.Epoch == w.epoch && m.Seq <= w.seq) {
		return false
	}
	w.seen, w.epoch, w.seq = true, m.Epoch, m.Seq
	return true
}
