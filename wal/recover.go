package wal

import (
	"fmt"
	"math"

	"github.com/ringlog/ringlog/device"
	"github.com/ringlog/ringlog/internal/testhooks"
)

// recovered is what Open learns from the device and hands to the committer.
type recovered struct {
	gen      uint64 // generation of the current header
	curSlot  int    // which header slot holds it
	startSeq uint64 // sequence of the first batch to write
	replayed uint64
	syncs    uint64
}

// recoverJournal replays every intact batch, syncs, and writes a new header
// generation whose journal is empty. A batch that is torn, corrupt or out of
// sequence ends replay: no batch after it was ever acknowledged, because
// batches are acknowledged in order, each once its own sync and every
// earlier one's have returned, and a torn batch's sync never did. Batches
// start on multiples of the writer's block size, which may be smaller than
// the reader's.
func recoverJournal(dev device.Device, offset, size int64) (recovered, error) {
	var st recovered
	hdrs := device.AlignedBuffer(2 * slot)
	if _, err := dev.ReadAt(hdrs, offset); err != nil {
		return st, fmt.Errorf("wal: read header: %w", err)
	}
	area := size - 2*slot
	best, bestSlot := header{}, -1
	var firstErr error
	for i := range 2 {
		h, err := decodeHeader(hdrs[i*slot:])
		if err == nil && h.area != uint64(area) {
			err = fmt.Errorf("%w: header says area %d, region has %d", ErrBadFormat, h.area, area)
		}
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if bestSlot < 0 || h.gen > best.gen {
			best, bestSlot = h, i
		}
	}
	if bestSlot < 0 {
		return st, firstErr
	}

	app := newApplier(dev)
	bs := int64(dev.BlockSize())
	areaStart := offset + 2*slot
	seq := best.startSeq
	var pos int64
	var buf []byte
	// span reads n bytes at area position pos in whole blocks of this
	// device. A batch starts on a multiple of the block size of the device
	// that wrote it, a sector at least, which may be smaller than this
	// one's: the same log opens buffered and with O_DIRECT.
	span := func(pos, n int64) ([]byte, error) {
		from, to := pos/bs*bs, (pos+n+bs-1)/bs*bs
		if int64(len(buf)) < to-from {
			buf = device.AlignedBuffer(int(max(to-from, 64<<10)))
		}
		if _, err := dev.ReadAt(buf[:to-from], areaStart+from); err != nil {
			return nil, fmt.Errorf("wal: replay: %w", err)
		}
		return buf[pos-from : pos-from+n], nil
	}
	for pos+device.SectorSize <= area {
		head, err := span(pos, batchHeaderLen)
		if err != nil {
			return st, err
		}
		bh, ok := decodeBatchHeader(head)
		if !ok || bh.seq != seq || bh.padded == 0 || int64(bh.padded)%device.SectorSize != 0 ||
			int64(bh.padded) > area-pos || int64(bh.payload)+batchHeaderLen > int64(bh.padded) {
			break
		}
		body, err := span(pos, int64(bh.padded))
		if err != nil {
			return st, err
		}
		payload := body[batchHeaderLen : batchHeaderLen+bh.payload]
		if !batchChecksumOK(body, payload) && !testhooks.ReplayTornJournal.Load() {
			break
		}
		ws, err := decodeWrites(payload, bh.ntx)
		if err != nil {
			break
		}
		if st.replayed == 0 {
			// Make what replay read durable before any home write: after a
			// failed sync the device can still show a batch it may lose
			// (the journal is reopened without a crash), and a crash
			// after some of that batch's home writes, with the batch
			// gone, would leave part of a transaction that no replay can
			// finish.
			if err := dev.Sync(); err != nil {
				return st, fmt.Errorf("wal: sync before replay: %w", err)
			}
			st.syncs++
		}
		if err := app.apply(ws); err != nil {
			return st, err
		}
		st.replayed++
		seq++
		pos += int64(bh.padded)
	}
	if err := dev.Sync(); err != nil {
		return st, fmt.Errorf("wal: replay sync: %w", err)
	}
	// The new generation must start past every batch still in the area:
	// otherwise, once its batches reach a stale one whose sequence happens
	// to come next, a later replay applies that stale batch too. Replay can
	// stop short of higher sequences: a checkpoint whose header was lost
	// but whose first batch landed leaves that batch at the area's start,
	// ahead of the current generation's batches behind it.
	if top, err := highestSeq(dev, areaStart, pos, area); err != nil {
		return st, err
	} else if top >= seq {
		seq = top + 1
	}
	// Start an empty generation in the other slot; the current copy stays
	// valid until the new one is durable, so a crash here replays again.
	next := header{gen: best.gen + 1, startSeq: seq, area: uint64(area)}
	other := 1 - bestSlot
	hb := hdrs[other*slot : (other+1)*slot]
	clear(hb)
	next.encode(hb)
	if _, err := dev.WriteAt(hb, offset+int64(other)*slot); err != nil {
		return st, fmt.Errorf("wal: write header: %w", err)
	}
	if err := dev.Sync(); err != nil {
		return st, fmt.Errorf("wal: header sync: %w", err)
	}
	st.gen, st.curSlot, st.startSeq = next.gen, other, seq
	st.syncs += 2
	return st, nil
}

// highestSeq returns the highest sequence of any batch header in the area
// from pos (rounded down to a block) on, or 0 if there is none. Batch
// headers start on a sector.
func highestSeq(dev device.Device, areaStart, pos, area int64) (uint64, error) {
	bs := int64(dev.BlockSize())
	from := pos / bs * bs
	if from >= area {
		return 0, nil
	}
	buf := device.AlignedBuffer(int(area - from))
	if _, err := dev.ReadAt(buf, areaStart+from); err != nil {
		return 0, fmt.Errorf("wal: replay: %w", err)
	}
	var top uint64
	for off := 0; off+batchHeaderLen <= len(buf); off += device.SectorSize {
		bh, ok := decodeBatchHeader(buf[off:])
		// Count only whole, intact batches, so that bytes which merely look
		// like a header (inside a payload) cannot push the sequence around,
		// and never a sequence that has no successor.
		if !ok || bh.seq == math.MaxUint64 || int64(batchHeaderLen)+int64(bh.payload) > int64(len(buf)-off) {
			continue
		}
		if batchChecksumOK(buf[off:], buf[off+batchHeaderLen:off+batchHeaderLen+int(bh.payload)]) {
			top = max(top, bh.seq)
		}
	}
	return top, nil
}
