package stages_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ringlog/ringlog/stages"
	"pgregory.net/rapid"
)

func newWaiters(n int) []*stages.Waiter {
	ws := make([]*stages.Waiter, n)
	for i := range ws {
		ws[i] = stages.NewWaiter()
		ws[i].Pos = uint64(i) * 100
	}
	return ws
}

func TestFinishChainWakesOneAtATime(t *testing.T) {
	ws := newWaiters(4)
	boom := errors.New("boom")
	stages.FinishChain(ws, boom, nil)
	for i, w := range ws {
		for j := i + 1; j < len(ws); j++ {
			if isClosed(ws[j]) {
				t.Fatalf("waiter %d woken before waiter %d passed on", j, i)
			}
		}
		waitDone(t, w, "waiter") // receives and passes on, as an owner does
		if w.Err != boom || w.Pos != uint64(i)*100 {
			t.Fatalf("waiter %d: pos %d err %v, want %d and %v", i, w.Pos, w.Err, i*100, boom)
		}
	}
}

// An owner that must stop waiting before its turn (the log is closing) can
// still tell that its outcome is in, and what it is.
func TestFinishChainRecordsBeforeWaking(t *testing.T) {
	ws := newWaiters(3)
	boom := errors.New("boom")
	if ws[2].Recorded() {
		t.Fatal("recorded before FinishChain")
	}
	stages.FinishChain(ws, boom, nil)
	if isClosed(ws[2]) || !ws[2].Recorded() || ws[2].Err != boom {
		t.Fatalf("last waiter: woken %v, recorded %v, err %v; want asleep, recorded, %v", isClosed(ws[2]), ws[2].Recorded(), ws[2].Err, boom)
	}
	ws[2].Abandon() // its owner leaves with the outcome
	waitDone(t, ws[0], "first")
	waitDone(t, ws[1], "second") // passing on to the abandoned last ends quietly
}

func TestFinishChainSkipsAbandoned(t *testing.T) {
	ws := newWaiters(5)
	ws[1].Abandon() // before the chain reaches it
	ws[2].Abandon()
	stages.FinishChain(ws, nil, nil)
	waitDone(t, ws[0], "first")
	// Passing on from 0 goes through the abandoned 1 and 2 to 3.
	waitDone(t, ws[3], "after the abandoned")
	waitDone(t, ws[4], "last")
}

func TestFinishChainAbandonedHead(t *testing.T) {
	ws := newWaiters(3)
	ws[0].Abandon()
	stages.FinishChain(ws, nil, nil)
	waitDone(t, ws[1], "second")
	waitDone(t, ws[2], "third")
}

func TestAbandonAfterWakePassesOn(t *testing.T) {
	// An owner that gives up just as its turn comes, without seeing Done,
	// must not stall the owners after it.
	ws := newWaiters(3)
	stages.FinishChain(ws, nil, nil)
	ws[0].Abandon()
	waitDone(t, ws[1], "second")
	waitDone(t, ws[2], "third")
}

func TestFinishChainEmpty(t *testing.T) {
	end := make(chan struct{}, 1)
	stages.FinishChain(nil, nil, end) // no waiters: through at once
	if !hasToken(end) {
		t.Fatal("no token for an empty chain")
	}
}

// The end of a chain is told only once its last owner has had its turn:
// the committer has the next mark asked for this way (Committer.Marks).
func TestFinishChainEndAfterLast(t *testing.T) {
	ws := newWaiters(3)
	end := make(chan struct{}, 1)
	stages.FinishChain(ws, nil, end)
	for i, w := range ws[:2] {
		waitDone(t, w, "waiter")
		if hasToken(end) {
			t.Fatalf("token after waiter %d of 3 passed on", i)
		}
	}
	waitDone(t, ws[2], "last")
	if !hasToken(end) {
		t.Fatal("no token once the last waiter passed on")
	}
}

// A last owner that left does not take the token with it: whoever passes
// on past it sends it.
func TestFinishChainEndPastAbandonedLast(t *testing.T) {
	ws := newWaiters(3)
	ws[2].Abandon()
	end := make(chan struct{}, 1)
	stages.FinishChain(ws, nil, end)
	waitDone(t, ws[0], "first")
	if hasToken(end) {
		t.Fatal("token before the second waiter passed on")
	}
	waitDone(t, ws[1], "second")
	if !hasToken(end) {
		t.Fatal("no token once the chain passed the abandoned last waiter")
	}
}

func hasToken(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// Every owner that keeps waiting is woken, whatever the others do and
// whenever they do it: leave before the chain starts, or while it runs; and
// the end is told.
func TestFinishChainProperty(t *testing.T) {
	const (
		stay = iota
		leaveBefore
		leaveDuring
	)
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(1, 40).Draw(rt, "n")
		plan := rapid.SliceOfN(rapid.IntRange(stay, leaveDuring), n, n).Draw(rt, "plan")
		ws := newWaiters(n)
		for i, w := range ws {
			if plan[i] == leaveBefore {
				w.Abandon()
			}
		}
		var wg sync.WaitGroup
		woken := make([]bool, n)
		for i, w := range ws {
			switch plan[i] {
			case stay:
				wg.Go(func() {
					<-w.Done
					w.PassOn()
					woken[i] = true
				})
			case leaveDuring:
				wg.Go(w.Abandon)
			}
		}
		end := make(chan struct{}, 1)
		stages.FinishChain(ws, nil, end)
		all := make(chan struct{})
		go func() { wg.Wait(); close(all) }()
		select {
		case <-all:
		case <-time.After(guard):
			rt.Fatalf("owners still waiting after %v: the chain stopped", guard)
		}
		for i := range ws {
			if plan[i] == stay && !woken[i] {
				rt.Fatalf("waiter %d stayed and was not woken", i)
			}
		}
		if !hasToken(end) {
			rt.Fatal("every owner is through and the end has no token")
		}
	})
}

func isClosed(w *stages.Waiter) bool {
	select {
	case <-w.Done:
		return true
	default:
		return false
	}
}
