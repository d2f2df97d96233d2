/**
 * Sequence tracking for UDP receivers (specs/btest.md §7 "Loss counting"): a jump above the highest
 * sequence seen counts the gap as lost; a packet below it is a late (reordered) one — which takes one back
 * from lost — or a duplicate, told apart by a window of recently seen numbers. The native loop implements
 * the same rules (native/udp_loop.cc); both are tested against the same sender.
 */
const WINDOW = 4096;
/**
 * A jump ahead is loss only as far as a sender could have got since the last datagram: SLACK plus
 * 10 M datagrams a second (120 Gbit/s of 1500-byte packets). Beyond that, or further behind than the
 * window, it is somebody else's datagram (forged sequence numbers made a clean link
 * 99.999 % lossy), counted as foreign. The native loop uses the same bounds.
 */
const SLACK = 4096;
const MAX_PER_NS = 10e6 / 1e9;

export class SeqTracker {
  lost = 0;
  duplicates = 0;
  reordered = 0;
  packets = 0;
  private high = 0;
  private highAt = 0;
  private have = false;
  private seen = new Uint8Array(WINDOW);

  /** Takes one datagram's sequence number (arrival in ns); false when it is not plausibly the peer's. */
  push(seq: number, atNs = 0): boolean {
    if (this.have) {
      const ahead = (seq - this.high) | 0; // u32 wrap-around aware
      if (ahead > 0 && ahead - 1 > SLACK + Math.max(0, atNs - this.highAt) * MAX_PER_NS) return false;
      if (ahead <= 0 && (this.high - seq) >>> 0 >= WINDOW) return false;
    }
    this.packets++;
    if (!this.have) {
      this.have = true;
      this.high = seq;
      this.highAt = atNs;
      this.seen[seq % WINDOW] = 1;
      return true;
    }
    const ahead = (seq - this.high) | 0;
    if (ahead > 0) {
      const gap = ahead - 1;
      this.lost += gap;
      for (let k = 1; k <= Math.min(gap + 1, WINDOW); k++) this.seen[(this.high + k) % WINDOW] = 0;
      this.seen[seq % WINDOW] = 1;
      this.high = seq;
      this.highAt = atNs;
      return true;
    }
    if (this.seen[seq % WINDOW]) {
      this.duplicates++;
      return true;
    }
    this.reordered++;
    if (this.lost) this.lost--;
    this.seen[seq % WINDOW] = 1;
    return true;
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
