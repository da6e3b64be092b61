/**
 * `--trace-reloads` of bench/agent-memory.ts: after each warm reload, its timeline in ms from the
 * start of AgentStore.loadInto: the header checked (begin), each chunk's read issued and arrived,
 * each import's start and end, the staging slot's fill (getMappedRange … unmap) and remapping, and
 * the garbage collector's pauses (kind: 1 scavenge, 2 minor mark-sweep, 4 mark-compact, 8
 * incremental, 16 weak callbacks). It wraps the methods it watches; nothing else changes.
 */
import { PerformanceObserver } from "node:perf_hooks";
import { AgentStore } from "../../src/memory/persistence.js";
import { ReadPool } from "../../src/memory/read-pool.js";

let t0 = 0;
let tracing = false;
const events: string[] = [];
const mark = (what: string) => {
  if (tracing) events.push(`${(performance.now() - t0).toFixed(2).padStart(7)} ${what}`);
};

export function installReloadTrace(): void {
  const pool = ReadPool.shared();
  const read = pool.read.bind(pool);
  let readId = 0;
  pool.read = (fd, byteLength, position, blockBytes) => {
    const id = readId++;
    mark(`read ${id} issued (${(byteLength / 2 ** 20).toFixed(1)} MiB)`);
    const reading = read(fd, byteLength, position, blockBytes);
    void reading.then(() => mark(`read ${id} arrived`));
    return reading;
  };
  const proto = (globalThis as unknown as { GPUBuffer: { prototype: GPUBuffer } }).GPUBuffer.prototype;
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called below with its own `this`
  const getMappedRange = proto.getMappedRange;
  proto.getMappedRange = function (this: GPUBuffer, ...args: Parameters<GPUBuffer["getMappedRange"]>) {
    mark(`  getMappedRange`);
    return getMappedRange.apply(this, args);
  };
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called below with its own `this`
  const unmap = proto.unmap;
  proto.unmap = function (this: GPUBuffer) {
    mark(`  unmap`);
    return unmap.apply(this);
  };
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called below with its own `this`
  const mapAsync = proto.mapAsync;
  proto.mapAsync = function (this: GPUBuffer, ...args: Parameters<GPUBuffer["mapAsync"]>) {
    const issued = performance.now();
    const mapping = mapAsync.apply(this, args);
    void mapping.then(() => mark(`  mapped (${(performance.now() - issued).toFixed(2)} ms after asking)`));
    return mapping;
  };
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called below with its own `this`
  const loadInto = AgentStore.prototype.loadInto;
  AgentStore.prototype.loadInto = async function (this: AgentStore, tenant, agentId, sink) {
    events.length = 0;
    t0 = performance.now();
    tracing = true;
    const wrapped = {
      begin: (preamble: Parameters<typeof sink.begin>[0]) => {
        mark("begin");
        return sink.begin(preamble);
      },
      blocks: async (first: number, bytes: Uint8Array) => {
        mark(`import ${first}+${bytes.byteLength / this.identity.bytesPerBlock} starts`);
        await sink.blocks(first, bytes);
        mark(`import ends`);
      },
    };
    try {
      return await loadInto.call(this, tenant, agentId, wrapped);
    } finally {
      mark("loadInto returns");
      tracing = false;
      process.stdout.write(`reload of ${agentId}:\n${events.join("\n")}\n`);
    }
  };
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      const detail = (entry as unknown as { detail?: { kind?: number } }).detail;
      const startedAt = entry.startTime - t0;
      if (tracing)
        events.push(`${startedAt.toFixed(2).padStart(7)} GC kind ${detail?.kind} for ${entry.duration.toFixed(2)} ms`);
    }
  }).observe({ entryTypes: ["gc"] });
}
