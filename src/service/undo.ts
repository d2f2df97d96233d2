/**
 * What a starting service has started so far, closed in reverse if a later part fails: a service that
 * cannot have every part it needs exits non-zero before it ever says `online` (a taken page port must
 * not leave a healthy-looking device that never measures). Each step runs at most once, so a running
 * service can close its parts in the order shutdown needs and then run what is left.
 */
export class Undo {
  private readonly steps: (() => Promise<void>)[] = [];

  /** Adds a step; returns it, wrapped so that it runs once, whoever calls it first. */
  push(step: () => Promise<void> | void): () => Promise<void> {
    let done = false;
    const once = async () => {
      if (done) return;
      done = true;
      await step();
    };
    this.steps.push(once);
    return once;
  }

  /** Runs every step not run yet, newest first; a failing step does not stop the others. */
  async run(): Promise<void> {
    for (const step of this.steps.splice(0).reverse()) {
      try {
        await step();
      } catch {
        // best effort: the original error (or the shutdown) is what matters
      }
    }
  }
}
