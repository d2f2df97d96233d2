import { execFileSync } from 'node:child_process';

/**
 * A network namespace of the slow tests' own (root), its loopback shaped by tbf so the link, not how
 * busy the two cores are, sets the speed. Returns a runner for commands inside it and the clean-up.
 */
export function shapedNamespace(
  name: string,
  rateMbit: number,
): { inNs: (...args: string[]) => Buffer; drop: () => void } {
  if (process.getuid?.() !== 0)
    throw new Error('this test needs root (network namespace, tc); CI runs as root');
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
  const inNs = (...args: string[]) => ip('netns', 'exec', name, ...args);
  const drop = () => {
    try {
      ip('netns', 'del', name);
    } catch {}
  };
  drop();
  ip('netns', 'add', name);
  inNs('ip', 'link', 'set', 'lo', 'mtu', '1500');
  inNs('ip', 'link', 'set', 'lo', 'up');
  inNs(
    'tc',
    'qdisc',
    'add',
    'dev',
    'lo',
    'root',
    'tbf',
    'rate',
    `${rateMbit}mbit`,
    'burst',
    '64kb',
    'latency',
    '20ms',
  );
  return { inNs, drop };
}
