/**
 * The server's life: loading → ready → shutting_down, the requests in flight, and the flush hooks
 * that run on shutdown (agent memory registers one to persist dirty caches). Readiness and graceful
 * shutdown both read from here.
 */
import type { Logger } from "../logging.js";

export type ServerState = "loading" | "ready" | "shutting_down";

export type FlushHook = () => Promise<void> | void;

export class Lifecycle {
  private currentState: ServerState = "loading";
  private unhealthyReason: string | null = null;
  private readonly healthProbes: (() => string | null)[] = [];
  private readonly inFlight = new Set<AbortController>();
  private readonly flushHooks: { name: string; run: FlushHook }[] = [];
  private readonly idleWaiters: (() => void)[] = [];

  get state(): ServerState {
    return this.currentState;
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** Null while healthy; otherwise why not (e.g. the GPU device was lost). */
  get unhealthy(): string | null {
    if (this.unhealthyReason !== null) return this.unhealthyReason;
    for (const probe of this.healthProbes) {
      const reason = probe();
      if (reason !== null) return reason;
    }
    return null;
  }

  /** Ask `probe` on every health check (e.g. the backend's `failure`: a lost GPU device). */
  watchHealth(probe: () => string | null): void {
    this.healthProbes.push(probe);
  }

  markReady(): void {
    if (this.currentState === "loading") this.currentState = "ready";
  }

  markUnhealthy(reason: string): void {
    this.unhealthyReason = reason;
  }

  /** Register work to run once on shutdown, after in-flight requests are done or cancelled. */
  onFlush(name: string, run: FlushHook): void {
    this.flushHooks.push({ name, run });
  }

  /**
   * Track one request. Its signal aborts when the caller says so (the client went away) or when
   * shutdown's bound passes before it finishes.
   */
  beginRequest(): { signal: AbortSignal; abort: (reason: Error) => void; end: () => void } {
    const controller = new AbortController();
    this.inFlight.add(controller);
    return {
      signal: controller.signal,
      abort: (reason) => controller.abort(reason),
      end: () => {
        this.inFlight.delete(controller);
        if (this.inFlight.size === 0) this.idleWaiters.splice(0).forEach((wake) => wake());
      },
    };
  }

  /**
   * Stop being ready and wait up to `timeoutMs` for in-flight requests; abort the signals of those
   * still running then. Resolves with how many were cancelled.
   */
  async drain(timeoutMs: number, logger: Logger): Promise<number> {
    this.currentState = "shutting_down";
    if (this.inFlight.size === 0) return 0;
    logger.info(`waiting up to ${timeoutMs / 1000}s for ${this.inFlight.size} in-flight request(s)`);
    const idle = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs)));
    const outcome = await Promise.race([idle, timeout]);
    clearTimeout(timer);
    if (outcome !== "timeout") return 0;
    const cancelled = this.inFlight.size;
    logger.warning(`cancelling ${cancelled} request(s) still running after ${timeoutMs / 1000}s`);
    for (const controller of this.inFlight) controller.abort(new Error("server shutting down"));
    return cancelled;
  }

  /** Run every flush hook once, in order; a failing hook is logged and never stops the others. */
  async flush(logger: Logger): Promise<number> {
    let failed = 0;
    for (const hook of this.flushHooks.splice(0)) {
      try {
        await hook.run();
        logger.debug(`flush hook "${hook.name}" done`);
      } catch (error) {
        failed++;
        logger.error(`flush hook "${hook.name}" failed: ${(error as Error).message}`);
      }
    }
    return failed;
  }
}
