package stages

import "sync/atomic"

// Waiter is how a caller learns the outcome of an operation that other
// goroutines complete. Exactly one stage holds a Waiter at a time and that
// stage gives it its outcome once: alone (Finish), or as part of a group
// (FinishChain), where the caller before it in the group closes its Done.
//
// Its owner, the goroutine waiting on Done, must call PassOn once it has
// received from Done, and Abandon if it stops waiting before that: a waiter
// finished in a chain wakes the next one through its owner.
type Waiter struct {
	Done chan struct{}
	Pos  uint64
	Err  error

	next     *Waiter         // the waiter its owner wakes: set by FinishChain
	end      chan<- struct{} // the last of a chain: told once the chain is through
	chain    atomic.Int32    // chainPending, chainWoken or chainAbandoned
	recorded atomic.Bool     // FinishChain has set Pos and Err
}

// States of Waiter.chain.
const (
	chainPending   int32 = iota
	chainWoken           // the chain reached it: Done is closed, its owner passes on
	chainAbandoned       // the owner left; whoever wakes it passes on
)

// NewWaiter returns a waiter ready to be finished.
func NewWaiter() *Waiter { return &Waiter{Done: make(chan struct{})} }

// Finish records the outcome and wakes the caller.
func (w *Waiter) Finish(pos uint64, err error) {
	w.Pos, w.Err = pos, err
	close(w.Done)
}

// FinishChain gives every waiter of ws the outcome err (keeping its Pos) but
// wakes only the first; each woken owner wakes the next (PassOn). Once the
// chain is through, when the last owner passes on (or whoever wakes it, if
// it has left), end, if not nil, gets a token unless it holds one already;
// with no waiters at all, at once.
//
// Why not wake them all: a goroutine readied takes its processor's
// next-to-run slot and pushes the one that was there to the back of the run
// queue. Sixty-four callers woken at once fill that queue, and any stage
// goroutine pushed back behind them (the writer, committer or journal that
// the next group's sync waits for) waits until every one of them has run.
// Woken one after another, each caller hands its processor to the next, the
// queue stays short, and a stage pushed back waits behind a caller or two.
func FinishChain(ws []*Waiter, err error, end chan<- struct{}) {
	if len(ws) == 0 {
		signal(end)
		return
	}
	for i, w := range ws {
		w.Err = err
		if i+1 < len(ws) {
			w.next = ws[i+1]
		} else {
			w.end = end
		}
		w.recorded.Store(true)
	}
	wakeFrom(ws[0])
}

// signal sends ch a token without waiting, if ch is set: a token it holds
// already says the same.
func signal(ch chan<- struct{}) {
	if ch == nil {
		return
	}
	select {
	case ch <- struct{}{}:
	default:
	}
}

// PassOn is called by a waiter's owner once it has received from Done: it
// wakes the next waiter of the chain, and on past any whose owner has left.
func (w *Waiter) PassOn() {
	n, end := w.next, w.end
	w.next, w.end = nil, nil
	if n == nil {
		signal(end)
		return
	}
	wakeFrom(n)
}

// wakeFrom wakes n, the next waiter of a chain (if any), and goes on down
// the chain past every waiter whose owner has left.
func wakeFrom(n *Waiter) {
	for n != nil {
		if n.chain.CompareAndSwap(chainPending, chainWoken) {
			// n's owner passes on. Nothing here touches n once its Done
			// is closed: from then on it is its owner's alone.
			close(n.Done)
			return
		}
		// n's owner left: its turn falls to us.
		next, end := n.next, n.end
		n.next, n.end = nil, nil
		close(n.Done)
		if next == nil {
			signal(end)
		}
		n = next
	}
}

// Abandon is called by a waiter's owner that stops waiting before it has
// received from Done: the chain must not stop at it.
func (w *Waiter) Abandon() {
	if !w.chain.CompareAndSwap(chainPending, chainAbandoned) {
		// Woken already, though the owner did not see it: its turn.
		w.PassOn()
	}
}

// Recorded reports whether the waiter has its outcome, in Pos and Err,
// although its Done may not be closed yet: its turn in a chain has not come.
// An owner that must stop waiting (the log is closing) can still report the
// outcome; it then calls Abandon.
func (w *Waiter) Recorded() bool { return w.recorded.Load() }
