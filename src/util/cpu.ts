import { cpus } from 'node:os';

/**
 * CPU load of this machine since the last call, in percent of all cores (what the btest status byte
 * carries, §8) — from /proc/stat via os.cpus(), so it includes the kernel's network work.
 */
export function cpuMeter(): { percent(): number } {
  const snap = () =>
    cpus().reduce(
      (a, c) => {
        const t = c.times;
        a.busy += t.user + t.nice + t.sys + t.irq;
        a.all += t.user + t.nice + t.sys + t.irq + t.idle;
        return a;
      },
      { busy: 0, all: 0 },
    );
  let prev = snap();
  return {
    percent() {
      const now = snap();
      const all = now.all - prev.all;
      const busy = now.busy - prev.busy;
      prev = now;
      return all > 0 ? Math.min(100, Math.round((busy / all) * 100)) : 0;
    },
  };
}
