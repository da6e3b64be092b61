import { describe, expect, it } from "vitest";
import { RateLimiter } from "../../src/server/rate-limit.js";

function clock() {
  let now = 1000;
  return { now: () => now, advance: (seconds: number) => (now += seconds) };
}

describe("RateLimiter", () => {
  it("allows a burst of the per-minute limit per agent, then refills one request every 60/N seconds", () => {
    const time = clock();
    const limiter = new RateLimiter(3, 0, time.now);
    for (let i = 0; i < 3; i++) expect(limiter.take("a").allowed).toBe(true);
    expect(limiter.take("a")).toEqual({ allowed: false, scope: "agent", retryAfterSeconds: 20 });
    expect(limiter.take("b").allowed).toBe(true);
    time.advance(19);
    expect(limiter.take("a")).toEqual({ allowed: false, scope: "agent", retryAfterSeconds: 1 });
    time.advance(1);
    expect(limiter.take("a").allowed).toBe(true);
    expect(limiter.take("a").allowed).toBe(false);
  });

  it("limits the whole server across agents and anonymous requests", () => {
    const time = clock();
    const limiter = new RateLimiter(100, 2, time.now);
    expect(limiter.take("a").allowed).toBe(true);
    expect(limiter.take(null).allowed).toBe(true);
    expect(limiter.take("b")).toEqual({ allowed: false, scope: "global", retryAfterSeconds: 30 });
  });

  it("does not spend an agent's allowance on a request the global limit refused", () => {
    const time = clock();
    const limiter = new RateLimiter(1, 1, time.now);
    expect(limiter.take(null).allowed).toBe(true);
    expect(limiter.take("a")).toMatchObject({ allowed: false, scope: "global" });
    time.advance(60);
    expect(limiter.take("a").allowed).toBe(true);
  });

  it("treats 0 as no limit", () => {
    const limiter = new RateLimiter(0, 0, clock().now);
    for (let i = 0; i < 1000; i++) expect(limiter.take("a").allowed).toBe(true);
  });
});
