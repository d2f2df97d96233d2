import { spawn } from 'node:child_process';

/** Runs a command as a child and returns its output and the CPU seconds it used (user + system). */
export function runMeasured(
  cmd: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
) {
  // getrusage(RUSAGE_CHILDREN) through a tiny python3 wrapper: exact CPU for any child, no GNU time needed.
  const wrapper =
    'import resource,subprocess,sys,json\n' +
    'p=subprocess.run(sys.argv[1:])\n' +
    'r=resource.getrusage(resource.RUSAGE_CHILDREN)\n' +
    'sys.stderr.write("\\nBENCH_CPU "+json.dumps({"cpu_s":r.ru_utime+r.ru_stime,"code":p.returncode})+"\\n")\n';
  return new Promise<{ out: string; err: string; cpuS: number; code: number }>((resolve, reject) => {
    const child = spawn('python3', ['-c', wrapper, ...cmd], {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(timer);
      const m = /BENCH_CPU (\{.*\})/.exec(err);
      const stats = m
        ? (JSON.parse(m[1]!) as { cpu_s: number; code: number })
        : { cpu_s: Number.NaN, code: -1 };
      resolve({ out, err: err.replace(/\nBENCH_CPU .*\n/, ''), cpuS: stats.cpu_s, code: stats.code });
    });
  });
}

export interface Row {
  group: string;
  who: string;
  dir: 'download' | 'upload';
  threads: number;
  mbps: number;
  /** CPU seconds of the measuring client per GB it moved (whole run: pre-tests, ping, both directions) */
  cpuPerGB?: number;
  note?: string;
}

export function table(rows: Row[], reference: (r: Row) => Row | undefined): string {
  const head = ['group', 'client / peer', 'dir', 'thr', 'Gbit/s', 'ratio', 'CPU s/GB', 'note'];
  const lines = rows.map((r) => {
    const ref = reference(r);
    return [
      r.group,
      r.who,
      r.dir,
      String(r.threads),
      (r.mbps / 1000).toFixed(2),
      ref && ref !== r && ref.mbps > 0 ? `${(r.mbps / ref.mbps).toFixed(2)}× ${ref.who}` : '',
      r.cpuPerGB !== undefined && Number.isFinite(r.cpuPerGB) ? r.cpuPerGB.toFixed(3) : '',
      r.note ?? '',
    ];
  });
  const all = [head, ...lines];
  const w = head.map((_, i) => Math.max(...all.map((l) => l[i]!.length)));
  const fmt = (l: string[]) => `| ${l.map((c, i) => c.padEnd(w[i]!)).join(' | ')} |`;
  return [fmt(head), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...lines.map(fmt)].join('\n');
}
