import type { RmbtEvent } from './client.js';

const LABEL: Record<string, string> = {
  init: 'connecting',
  pretest_download: 'download pre-test',
  ping: 'ping',
  download: 'download',
  pretest_upload: 'upload pre-test',
  upload: 'upload',
  end: 'done',
};

/** A one-line live display on a terminal (stderr); silent when stderr is not a TTY. */
export function terminalProgress(out: NodeJS.WriteStream = process.stderr): (e: RmbtEvent) => void {
  if (!out.isTTY) return () => {};
  let phase = '';
  const show = (text: string) => out.write(`\r\x1b[2K${text}`);
  return (e) => {
    if (e.type === 'phase') {
      phase = LABEL[e.phase] ?? e.phase;
      if (e.phase === 'end') show('');
      else show(`${phase} …`);
    } else if (e.type === 'progress') {
      show(`${phase.padEnd(18)} ${e.mbps.toFixed(1).padStart(10)} Mbit/s   ${e.elapsed_s.toFixed(1)} s`);
    } else if (e.type === 'ping') {
      show(`${phase.padEnd(18)} ${e.ms.toFixed(3).padStart(10)} ms`);
    }
  };
}
