import { readFileSync } from 'node:fs';

/** This package's version (package.json beside dist/ and src/): `--version`, MQTT origin, RMBT results. */
export const VERSION = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
