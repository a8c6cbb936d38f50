import { randomFillSync } from 'node:crypto'
import { v7 as uuidv7 } from 'uuid'

/**
 * Row ids: UUIDv7 (the uuid package's layout), time-ordered, so each row's
 * primary-key entry lands next to the previous one on the index's last page.
 * The random bytes come from a pool refilled 4 KiB at a time rather than a
 * system call per id (docs/performance.md, "id pool"). Ids made in the same
 * millisecond count up from a random start (the package's own monotonic rule),
 * so they stay unique and in the order they were made.
 */
const randomPool = new Uint8Array(4096)
let randomNext = randomPool.length
const idClock = { msecs: -Infinity, seq: 0 }

export function timeOrderedId (now = Date.now()): string {
  if (randomNext === randomPool.length) {
    randomFillSync(randomPool)
    randomNext = 0
  }
  const random = randomPool.subarray(randomNext, randomNext += 16)
  if (now > idClock.msecs) {
    idClock.msecs = now
    // 31 random bits: room to count up within the millisecond.
    idClock.seq = ((random[6] & 0x7f) << 24) | (random[7] << 16) | (random[8] << 8) | random[9]
  } else {
    idClock.seq = (idClock.seq + 1) | 0
    if (idClock.seq === 0) idClock.msecs++
  }
  return uuidv7({ random, msecs: idClock.msecs, seq: idClock.seq })
}
