package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/layout"
	"github.com/ringlog/ringlog/stages"
)

// ErrReservationDone is returned by a second Commit or Discard of a
// Reservation.
var ErrReservationDone = errors.New("ringlog: reservation already committed or discarded")

// Reservation is room for one record that the caller fills itself (the
// zero-copy path): write exactly Len bytes at Offset on the device, then
// Commit. With O_DIRECT, Offset is block-aligned and the caller may write
// Len rounded up to the block size. Every Reservation must be committed or
// discarded: records after it become durable only once it is. Finish the
// writes at Offset before Close: the log cannot stop them, and once it is
// closed the space is no longer the reservation's (the next Open hands it
// out again), so a late write there can damage records acknowledged then.
type Reservation struct {
	l      *Log
	pos    uint64
	n      int
	stride uint64
	done   atomic.Bool
}

// Reserve places a record of n bytes at the tail and returns where to write
// it. ctx bounds the wait for room, as for Append.
func (l *Log) Reserve(ctx context.Context, n int) (*Reservation, error) {
	if n <= 0 {
		return nil, fmt.Errorf("%w: Reserve(%d)", ErrBadSize, n)
	}
	if err := l.writable(); err != nil {
		return nil, err
	}
	stride := stages.Stride(stages.KindReserve, n, uint64(l.bs))
	if uint64(n) > math.MaxUint32 || stride > uint64(l.geo.MaxStride()) {
		return nil, fmt.Errorf("%w: reservation of %d bytes", ErrTooLarge, n)
	}
	r := stages.NewRequest(stages.KindReserve, nil, n)
	if err := l.submit(ctx, r); err != nil {
		return nil, err
	}
	pos, err := l.await(ctx, r)
	if err != nil {
		return nil, err
	}
	res := &Reservation{l: l, pos: pos, n: n, stride: stride}
	if ctx.Err() != nil {
		// Placed as the caller gave up: do not leave a hole behind. The
		// padding goes to the writer, but nothing waits for it to be
		// durable. That wait could last for ever: it is behind every
		// earlier record, and the caller may hold one of them, an earlier
		// reservation, open.
		res.done.Store(true)
		if w := res.send(res.padding(device.AlignedBuffer(l.bs))); w != nil {
			w.Abandon()
		}
		return nil, ctx.Err()
	}
	return res, nil
}

// Offset is the device offset where the caller writes the payload.
func (r *Reservation) Offset() int64 { return r.l.geo.Phys(r.pos) + int64(r.l.bs) }

// Position is the record's position once committed.
func (r *Reservation) Position() Position { return Position(r.pos) }

// Len is the payload size reserved.
func (r *Reservation) Len() int { return r.n }

// Commit seals the bytes the caller wrote at Offset — it reads them back and
// checksums them into the record header — and returns once the record is
// durable. If ctx ends first, Commit returns ctx.Err(); the record stays on
// its way and becomes durable once every record before it has, unless the
// log closes or crashes first (as for any record not acknowledged).
func (r *Reservation) Commit(ctx context.Context) error {
	if !r.done.CompareAndSwap(false, true) {
		return ErrReservationDone
	}
	l := r.l
	n := int(layout.RoundUp(uint64(r.n), uint64(l.bs)))
	payload := device.AlignedBuffer(n)
	block := device.AlignedBuffer(l.bs)
	layout.PutHeader(block, layout.Header{Pos: r.pos, Length: uint32(r.n), Epoch: l.epoch, DataOff: uint16(l.bs), Kind: layout.KindRecord})
	if _, err := l.dev.ReadAt(payload, r.Offset()); err != nil {
		// The hole must still be closed, or no later record becomes durable.
		r.seal(ctx, r.padding(block))
		return fmt.Errorf("ringlog: read reservation: %w", err)
	}
	layout.Seal(block, payload[:r.n])
	return r.seal(ctx, block)
}

// Discard abandons the reservation: it becomes padding, and later records
// can become durable.
func (r *Reservation) Discard(ctx context.Context) error {
	if !r.done.CompareAndSwap(false, true) {
		return ErrReservationDone
	}
	return r.seal(ctx, r.padding(device.AlignedBuffer(r.l.bs)))
}

func (r *Reservation) padding(block []byte) []byte {
	clear(block)
	layout.PutHeader(block, layout.Header{Pos: r.pos, Length: uint32(r.stride), Epoch: r.l.epoch, Kind: layout.KindPadding})
	layout.SealInline(block, 0)
	return block
}

// seal hands the header block to the writer and waits for durability.
func (r *Reservation) seal(ctx context.Context, block []byte) error {
	w := r.send(block)
	if w == nil {
		return ErrClosed
	}
	l := r.l
	select {
	case <-w.Done:
		w.PassOn()
		return w.Err
	case <-l.stopped:
		_, err := l.closedResult(w)
		return err
	case <-ctx.Done():
		w.Abandon()
		return ctx.Err()
	}
}

// send hands the header block to the writer and returns the waiter that
// learns when it is durable, or nil if the log is closing.
func (r *Reservation) send(block []byte) *stages.Waiter {
	w := stages.NewWaiter()
	w.Pos = r.pos
	select {
	case r.l.writer.Blocks <- stages.Item{Kind: stages.ItemBlock, Pos: r.pos, Span: r.stride, Block: block, W: w}:
		return w
	case <-r.l.quit:
		return nil
	}
}
