/**
 * Turns that have ended but whose cache comes back to the memory one row later (KvMemory.settling:
 * the engine writes the answer's last token's K/V first). Whatever would miss that turn — the agent's
 * follow-up, a shared-block lookup in its tenant, an eviction, a deletion, a flush, the Agent API
 * describing it — waits here, for at most a step.
 */
interface Pending {
  tenant: string;
  settled: Promise<void>;
}

export class SettlingTurns {
  /** By agent (tenant and id): every settle of the agent in flight, as one promise. */
  private readonly pending = new Map<string, Pending>();

  private static key(tenant: string, agentId: string): string {
    return `${tenant}\0${agentId}`;
  }

  add(tenant: string, agentId: string, settled: Promise<void>): void {
    const key = SettlingTurns.key(tenant, agentId);
    const earlier = this.pending.get(key)?.settled;
    const all = earlier ? Promise.all([earlier, settled]).then(() => undefined) : settled;
    this.pending.set(key, { tenant, settled: all });
    void all.then(() => {
      if (this.pending.get(key)?.settled === all) this.pending.delete(key);
    });
  }

  /** Resolves once the agent has no turn settling (at once when it has none). */
  async ofAgent(tenant: string, agentId: string): Promise<void> {
    await this.pending.get(SettlingTurns.key(tenant, agentId))?.settled;
  }

  /** Resolves once no agent of the tenant has a turn settling. */
  async ofTenant(tenant: string): Promise<void> {
    await Promise.all([...this.pending.values()].filter((p) => p.tenant === tenant).map((p) => p.settled));
  }

  /** Resolves once no turn is settling. */
  async all(): Promise<void> {
    await Promise.all([...this.pending.values()].map((p) => p.settled));
  }
}
