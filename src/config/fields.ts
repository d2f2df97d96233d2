/**
 * A small JSON-schema-like field language: one place holds each setting's type, default, range and
 * description. The validator, the CLI flags, `--help`, and (later) the add-on's config.yaml schema,
 * translations/en.yaml and DOCS.md are derived from or checked against it.
 */
interface FieldCommon {
  readonly description: string;
  /** Absent means required-with-default; `optional` keys may be missing (HA `?`). */
  readonly optional?: boolean;
  /** Passwords and keys: never logged, shown as `password` in the add-on UI. */
  readonly secret?: boolean;
}
export interface BoolField extends FieldCommon {
  readonly type: 'bool';
  readonly default: boolean;
}
export interface NumField extends FieldCommon {
  readonly type: 'int' | 'float';
  readonly default?: number;
  readonly min: number;
  readonly max: number;
}
export interface StrField extends FieldCommon {
  readonly type: 'str';
  readonly default?: string;
  readonly pattern?: RegExp;
  readonly patternHint?: string;
  readonly maxLength?: number;
}
export interface EnumField extends FieldCommon {
  readonly type: 'enum';
  readonly values: readonly string[];
  readonly default: string;
}
export type Field = BoolField | NumField | StrField | EnumField;
export type Group = Readonly<Record<string, Field>>;

type Base<F> = F extends BoolField
  ? boolean
  : F extends NumField
    ? number
    : F extends EnumField
      ? F['values'][number]
      : string;
type HasValue<F> = F extends { optional: true } ? false : F extends { default: unknown } ? true : false;
type RequiredKeys<G extends Group> = { [K in keyof G]: HasValue<G[K]> extends true ? K : never }[keyof G];
type OptionalKeys<G extends Group> = Exclude<keyof G, RequiredKeys<G>>;
export type GroupValue<G extends Group> = { readonly [K in RequiredKeys<G>]: Base<G[K]> } & {
  readonly [K in OptionalKeys<G>]?: Base<G[K]>;
};

/** A violation names the key, what was given, and what is allowed. */
export interface Violation {
  key: string;
  message: string;
}

export function allowedText(f: Field): string {
  switch (f.type) {
    case 'bool':
      return 'true or false';
    case 'int':
      return `a whole number from ${f.min} to ${f.max}`;
    case 'float':
      return `a number from ${f.min} to ${f.max}`;
    case 'enum':
      return `one of ${f.values.join(', ')}`;
    case 'str':
      return f.patternHint ?? 'a string';
  }
}

/** Converts a string from env or a flag to the field's type; objects from JSON are checked as they are. */
export function coerce(f: Field, raw: unknown): unknown {
  if (typeof raw !== 'string') return raw;
  switch (f.type) {
    case 'bool':
      if (/^(1|true|yes|on)$/i.test(raw)) return true;
      if (/^(0|false|no|off)$/i.test(raw)) return false;
      return raw;
    case 'int':
    case 'float':
      return raw.trim() !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw;
    default:
      return raw;
  }
}

export function checkField(key: string, f: Field, value: unknown): Violation | undefined {
  const bad = (): Violation => ({
    key,
    message: `${key} is ${JSON.stringify(value)}; allowed: ${allowedText(f)}`,
  });
  switch (f.type) {
    case 'bool':
      return typeof value === 'boolean' ? undefined : bad();
    case 'int':
    case 'float':
      if (typeof value !== 'number' || !Number.isFinite(value)) return bad();
      if (f.type === 'int' && !Number.isInteger(value)) return bad();
      return value < f.min || value > f.max ? bad() : undefined;
    case 'enum':
      return typeof value === 'string' && f.values.includes(value) ? undefined : bad();
    case 'str':
      if (typeof value !== 'string') return bad();
      if (value.length > (f.maxLength ?? 4096)) return bad();
      return f.pattern && !f.pattern.test(value) ? bad() : undefined;
  }
}

export function kebab(key: string): string {
  return key.replace(/_/g, '-');
}
