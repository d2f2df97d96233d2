/**
 * Sequence tracking for UDP receivers (specs/btest.md §7 "Loss counting"): a jump above the highest
 * sequence seen counts the gap as lost; a packet below it is a late (reordered) one — which takes one back
 * from lost — or a duplicate, told apart by a window of recently seen numbers. The native loop implements
 * the same rules (native/udp_loop.cc); both are tested against the same sender.
 */
const WINDOW = 4096;

export class SeqTracker {
  lost = 0;
  duplicates = 0;
  reordered = 0;
  packets = 0;
  private high = 0;
  private have = false;
  private seen = new Uint8Array(WINDOW);

  push(seq: number): void {
    this.packets++;
    if (!this.have) {
      this.have = true;
      this.high = seq;
      this.seen[seq % WINDOW] = 1;
      return;
    }
    const ahead = (seq - this.high) | 0; // u32 wrap-around aware
    if (ahead > 0) {
      const gap = ahead - 1;
      this.lost += gap;
      for (let k = 1; k <= Math.min(gap + 1, WINDOW); k++) this.seen[(this.high + k) % WINDOW] = 0;
      this.seen[seq % WINDOW] = 1;
      this.high = seq;
      return;
    }
    const behind = (this.high - seq) >>> 0;
    if (behind < WINDOW && this.seen[seq % WINDOW]) {
      this.duplicates++;
      return;
    }
    this.reordered++;
    if (this.lost) this.lost--;
    if (behind < WINDOW) this.seen[seq % WINDOW] = 1;
  }
}

/** RFC 3550 §6.4.1 interarrival jitter, updated per packet from (arrival − send) transit times. */
export class Rfc3550Jitter {
  jitter = 0;
  private prev: number | undefined;

  push(transitNs: number): void {
    if (this.prev !== undefined) this.jitter += (Math.abs(transitNs - this.prev) - this.jitter) / 16;
    this.prev = transitNs;
  }
}
