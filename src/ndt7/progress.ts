/** A one-line live display of an ndt7 run on a terminal (stderr); silent when stderr is not a TTY. */
export type Ndt7Event =
  | { type: 'phase'; phase: string }
  | { type: 'progress'; direction: 'download' | 'upload'; mbps: number };

const LABEL: Record<string, string> = {
  locate: 'asking M-Lab Locate',
  latency: 'idle latency',
  download: 'download',
  upload: 'upload',
};

export function ndt7Progress(out: NodeJS.WriteStream = process.stderr): (e: Ndt7Event) => void {
  if (!out.isTTY) return () => {};
  const show = (text: string) => out.write(`\r\x1b[2K${text}`);
  return (e) => {
    if (e.type === 'phase') show(`${LABEL[e.phase] ?? e.phase} …`);
    else show(`${e.direction.padEnd(18)} ${e.mbps.toFixed(1).padStart(10)} Mbit/s`);
  };
}
