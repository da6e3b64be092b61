/** The memory's record of turns whose cache comes back one row later: who waits for what. */
import { describe, expect, it } from "vitest";
import { SettlingTurns } from "../../src/memory/settling-turns.js";

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

/** Whether `promise` has resolved once pending callbacks have run. */
async function isDone(promise: Promise<void>): Promise<boolean> {
  let done = false;
  void promise.then(() => (done = true));
  for (let i = 0; i < 5; i++) await Promise.resolve();
  return done;
}

describe("settling turns", () => {
  it("makes an agent wait for every settle of its own, and no one else", async () => {
    const turns = new SettlingTurns();
    const first = deferred();
    const second = deferred();
    const other = deferred();
    turns.add("t1", "a", first.promise);
    turns.add("t1", "a", second.promise);
    turns.add("t2", "b", other.promise);

    const agent = turns.ofAgent("t1", "a");
    const tenant = turns.ofTenant("t1");
    const everyone = turns.all();
    expect(await isDone(turns.ofAgent("t1", "nobody"))).toBe(true);
    expect(await isDone(turns.ofTenant("t3"))).toBe(true);

    first.resolve();
    expect(await isDone(agent)).toBe(false);
    second.resolve();
    expect(await isDone(agent)).toBe(true);
    expect(await isDone(tenant)).toBe(true);
    expect(await isDone(everyone)).toBe(false);
    other.resolve();
    expect(await isDone(everyone)).toBe(true);
    // Nothing is left pending once everything settled.
    expect(await isDone(turns.all())).toBe(true);
  });
});
