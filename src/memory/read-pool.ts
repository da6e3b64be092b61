/**
 * Worker threads that read runs of an agent file's blocks and return them with each block's CRC-32.
 * Reading (a copy out of the page cache) and checksumming are the CPU half of a warm reload; on one
 * thread they ran at ~2 GB/s on an H200's host against `dd`'s 5.5 (bench/reload.ts), so several
 * threads do both while the main thread hands the verified blocks to the KV cache.
 *
 * Buffers move, never copy: a worker reads into an ArrayBuffer and transfers it with its reply; the
 * caller gives it back with `recycle` once the bytes are used, and it travels (transferred again) with
 * a later task. Plain ArrayBuffers rather than shared memory, because Dawn's writeBuffer and N-API
 * take no SharedArrayBuffer.
 *
 * The workers' code is a few lines of plain JavaScript, evaluated rather than loaded from a file, so
 * it runs the same from the TypeScript sources (tests) and from dist/ (the product).
 */
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";

const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const { readSync } = require("node:fs");
const { crc32 } = require("node:zlib");
parentPort.on("message", ({ id, fd, buffer, byteLength, capacity, position, blockBytes }) => {
  try {
    const target = buffer && buffer.byteLength >= byteLength ? buffer : new ArrayBuffer(Math.max(byteLength, capacity));
    const view = new Uint8Array(target, 0, byteLength);
    for (let done = 0; done < byteLength; ) {
      const read = readSync(fd, view, done, byteLength - done, position + done);
      if (read === 0) {
        parentPort.postMessage({ id, endOfFile: position + done });
        return;
      }
      done += read;
    }
    const crcs = new Uint32Array(Math.ceil(byteLength / blockBytes));
    for (let i = 0; i < crcs.length; i++) crcs[i] = crc32(view.subarray(i * blockBytes, (i + 1) * blockBytes));
    parentPort.postMessage({ id, crcs, buffer: target }, [target]);
  } catch (error) {
    parentPort.postMessage({ id, error: String(error && error.message ? error.message : error) });
  }
});
`;

/** The file ended before the run did: the byte offset where it ends. */
export class EndOfFileError extends Error {
  override name = "EndOfFileError";
  constructor(readonly position: number) {
    super(`file ends at byte ${position}`);
  }
}

/** A run as read: `bytes` (a view at the start of its own ArrayBuffer) and each block's CRC-32. */
export interface ReadRun {
  bytes: Uint8Array;
  crcs: Uint32Array;
}

interface Task {
  id: number;
  fd: number;
  byteLength: number;
  capacity: number;
  position: number;
  blockBytes: number;
  resolve: (run: ReadRun) => void;
  reject: (error: Error) => void;
}

interface Reply {
  id: number;
  crcs?: Uint32Array;
  buffer?: ArrayBuffer;
  endOfFile?: number;
  error?: string;
}

class PoolWorker {
  readonly worker: Worker;
  task: Task | null = null;

  constructor(onReply: (self: PoolWorker, reply: Reply) => void, onExit: (self: PoolWorker, error: Error) => void) {
    this.worker = new Worker(WORKER_SOURCE, { eval: true });
    this.worker.on("message", (reply: Reply) => onReply(this, reply));
    this.worker.on("error", (error) => onExit(this, error));
    this.worker.on("exit", (code) => onExit(this, new Error(`file reader thread exited (code ${code})`)));
    // An idle worker must not keep the process alive; a busy one does until its reply. After the
    // listeners: attaching a "message" listener refs the worker's port again.
    this.worker.unref();
  }
}

export class ReadPool {
  private static instance: ReadPool | undefined;
  private readonly workers: PoolWorker[] = [];
  private readonly queue: Task[] = [];
  /** Buffers given back, handed to the next tasks (at most a few kept). */
  private readonly spare: ArrayBuffer[] = [];
  private nextId = 1;

  /** Threads for a pool: the cores but one (the main thread uploads meanwhile), at least 2 (a thread
   * alternates reading and checksumming, so two overlap them), at most 4. */
  static defaultSize(): number {
    return Math.max(2, Math.min(4, availableParallelism() - 1));
  }

  /** The process's pool, started on first use. */
  static shared(): ReadPool {
    ReadPool.instance ??= new ReadPool(ReadPool.defaultSize());
    return ReadPool.instance;
  }

  constructor(readonly size: number) {}

  /**
   * Start every thread now rather than on the first reads: a thread takes tens of milliseconds to
   * start, which the first reload after a server start would otherwise wait for. Idle threads do not
   * keep the process alive. With `bufferBytes`, also make sure the pool keeps 2 · size buffers of
   * that many bytes (one in flight and one waiting per thread), their pages touched.
   */
  start(bufferBytes = 0): void {
    while (this.workers.length < this.size) this.workers.push(this.newWorker());
    // Touched now (fill), so that their pages are there: a read into new memory faults them in as it
    // goes, at a fifth of the speed. A 1K-token agent's reload on an H200 host waited 8 ms for its
    // first 5.5 MiB chunk when the kept buffers were too small for it, 3 ms when one fit.
    while (bufferBytes > 0 && this.spare.filter((buffer) => buffer.byteLength >= bufferBytes).length < 2 * this.size) {
      const buffer = new ArrayBuffer(bufferBytes);
      new Uint8Array(buffer).fill(1);
      this.spare.push(buffer);
    }
  }

  /** Threads running now. */
  get threads(): number {
    return this.workers.length;
  }

  /**
   * Read `byteLength` bytes of the open file `fd` at `position`, and CRC-32 each `blockBytes` of them
   * (the last block may be shorter). Rejects with EndOfFileError when the file is shorter. `fd` must
   * stay open until the promise settles. Where no kept buffer holds the run, a new one of `capacity`
   * bytes (at least the run's) carries it: a caller that recycles its buffers asks for the longest
   * run it reads, so that a kept buffer fits every later run.
   */
  read(fd: number, byteLength: number, position: number, blockBytes: number, capacity = byteLength): Promise<ReadRun> {
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.queue.push({ id, fd, byteLength, capacity, position, blockBytes, resolve, reject });
      this.pump();
    });
  }

  /**
   * Give a run's buffer back for later reads; its bytes must not be used after this. Beyond a few
   * kept, the smallest goes: a read into a buffer too small for it allocates a new one, and new
   * memory reads at a fifth of the speed (page faults: 1.6 against 7–8 GB/s on an H200 host).
   */
  recycle(bytes: Uint8Array): void {
    if (bytes.buffer instanceof SharedArrayBuffer) return;
    this.spare.push(bytes.buffer);
    if (this.spare.length > 2 * this.size + 1) {
      const smallest = this.spare.reduce(
        (best, buffer, index, all) => (buffer.byteLength < all[best]!.byteLength ? index : best),
        0,
      );
      this.spare.splice(smallest, 1);
    }
  }

  /** The smallest kept buffer that holds `byteLength` bytes, taken from the spares; none if none does. */
  private spareFor(byteLength: number): ArrayBuffer | undefined {
    let chosen = -1;
    this.spare.forEach((buffer, index) => {
      if (buffer.byteLength >= byteLength && (chosen < 0 || buffer.byteLength < this.spare[chosen]!.byteLength))
        chosen = index;
    });
    return chosen < 0 ? undefined : this.spare.splice(chosen, 1)[0];
  }

  private pump(): void {
    while (this.queue.length > 0) {
      let idle = this.workers.find((candidate) => candidate.task === null);
      if (!idle && this.workers.length < this.size) {
        idle = this.newWorker();
        this.workers.push(idle);
      }
      if (!idle) return;
      const task = this.queue.shift()!;
      idle.task = task;
      idle.worker.ref();
      const { id, fd, byteLength, capacity, position, blockBytes } = task;
      const buffer = this.spareFor(byteLength);
      idle.worker.postMessage({ id, fd, buffer, byteLength, capacity, position, blockBytes }, buffer ? [buffer] : []);
    }
  }

  private newWorker(): PoolWorker {
    return new PoolWorker(
      (self, reply) => this.settle(self, reply),
      (self, error) => this.lost(self, error),
    );
  }

  private settle(worker: PoolWorker, reply: Reply): void {
    const task = worker.task;
    worker.task = null;
    worker.worker.unref();
    if (task && task.id === reply.id) {
      if (reply.crcs && reply.buffer)
        task.resolve({ bytes: new Uint8Array(reply.buffer, 0, task.byteLength), crcs: reply.crcs });
      else if (reply.endOfFile !== undefined) task.reject(new EndOfFileError(reply.endOfFile));
      else task.reject(new Error(reply.error ?? "file reader thread failed"));
    }
    this.pump();
  }

  /** A worker died (it should not): its task fails, and a new worker takes the queue. */
  private lost(worker: PoolWorker, error: Error): void {
    const index = this.workers.indexOf(worker);
    if (index < 0) return;
    this.workers.splice(index, 1);
    worker.task?.reject(error);
    worker.task = null;
    this.pump();
  }
}
