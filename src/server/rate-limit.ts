/**
 * Per-agent and global request limits, as token buckets refilled continuously: a limit of N per
 * minute allows a burst of N and then one request every 60/N seconds, with no cliff at a window edge.
 */
export type RateDecision = { allowed: true } | { allowed: false; scope: "agent" | "global"; retryAfterSeconds: number };

interface Bucket {
  tokens: number;
  updatedAt: number;
}

/** Idle buckets are full; dropping them changes nothing. Sweep when this many are held. */
const SWEEP_THRESHOLD = 10_000;

export class RateLimiter {
  private readonly agents = new Map<string, Bucket>();
  private readonly global: Bucket;

  constructor(
    private readonly perAgentPerMinute: number,
    private readonly globalPerMinute: number,
    private readonly nowSeconds: () => number = () => performance.now() / 1000,
  ) {
    this.global = { tokens: globalPerMinute, updatedAt: this.nowSeconds() };
  }

  /** Take one request for `agentId` (null: a request that names no agent); 0 limits are off. */
  take(agentId: string | null): RateDecision {
    const now = this.nowSeconds();
    const agentBucket = agentId !== null && this.perAgentPerMinute > 0 ? this.agentBucket(agentId, now) : null;
    if (agentBucket) {
      refill(agentBucket, this.perAgentPerMinute, now);
      if (agentBucket.tokens < 1) return refusal("agent", agentBucket, this.perAgentPerMinute);
    }
    if (this.globalPerMinute > 0) {
      refill(this.global, this.globalPerMinute, now);
      if (this.global.tokens < 1) return refusal("global", this.global, this.globalPerMinute);
      this.global.tokens -= 1;
    }
    if (agentBucket) agentBucket.tokens -= 1;
    return { allowed: true };
  }

  private agentBucket(agentId: string, now: number): Bucket {
    let bucket = this.agents.get(agentId);
    if (!bucket) {
      if (this.agents.size >= SWEEP_THRESHOLD) this.sweep(now);
      bucket = { tokens: this.perAgentPerMinute, updatedAt: now };
      this.agents.set(agentId, bucket);
    }
    return bucket;
  }

  private sweep(now: number): void {
    for (const [agentId, bucket] of this.agents) {
      refill(bucket, this.perAgentPerMinute, now);
      if (bucket.tokens >= this.perAgentPerMinute) this.agents.delete(agentId);
    }
  }
}

function refill(bucket: Bucket, perMinute: number, now: number): void {
  bucket.tokens = Math.min(perMinute, bucket.tokens + ((now - bucket.updatedAt) * perMinute) / 60);
  bucket.updatedAt = now;
}

function refusal(scope: "agent" | "global", bucket: Bucket, perMinute: number): RateDecision {
  const secondsUntilOneToken = ((1 - bucket.tokens) * 60) / perMinute;
  // The epsilon keeps float noise (0.95 tokens refilled as 0.9499999) from adding a whole second.
  return { allowed: false, scope, retryAfterSeconds: Math.max(1, Math.ceil(secondsUntilOneToken - 1e-9)) };
}
