/**
 * The WebGPU runtime under the ops: tensors over pooled buffers, kernel dispatches recorded into one
 * command encoder (many per submit; nothing waits on the GPU until a result is read), and small
 * per-dispatch parameters packed into one uniform arena written once per submit.
 *
 * Kernel binding convention (every kernels/*.wgsl follows it): @group(0) @binding(0) is the uniform
 * `params` struct (4-byte scalars only, at most 64, in the order given to `Params`), bindings 1… are
 * the storage buffers in the order of `bindings`. The params binding has a dynamic offset into the
 * arena, so a bind group depends only on the buffers and is cached.
 *
 * Validation errors (a bad bind group, a shader that does not compile) are raised at the next
 * submit or read, naming the kernel, instead of being printed and ignored.
 */
import { DTYPE_BYTES, type DType, type Tensor } from "../contract.js";
import type { GpuDevice } from "./device.js";
import { KernelLibrary, PARAMS_BINDING_BYTES } from "./kernels.js";
import { BulkTransfers } from "./staging-rings.js";

export class GpuTensor implements Tensor {
  freed = false;
  constructor(
    readonly shape: readonly number[],
    readonly dtype: DType,
    readonly buffer: GPUBuffer,
    /** Byte offset of element 0 inside `buffer` (views share their parent's buffer). */
    readonly byteOffset: number,
    readonly role: "weights" | "activations" | "view",
  ) {}

  get size(): number {
    return this.shape.reduce((product, dim) => product * dim, 1);
  }

  get byteLength(): number {
    return this.size * DTYPE_BYTES[this.dtype];
  }
}

/** Parameters of one dispatch: 4-byte scalars, in the order the kernel's Params struct declares them. */
export class Params {
  readonly words: number[] = [];
  private readonly kinds: ("u32" | "i32" | "f32")[] = [];
  u32(value: number): this {
    this.words.push(value >>> 0);
    this.kinds.push("u32");
    return this;
  }
  i32(value: number): this {
    this.words.push(value | 0);
    this.kinds.push("i32");
    return this;
  }
  f32(value: number): this {
    this.words.push(value);
    this.kinds.push("f32");
    return this;
  }
  writeTo(view: DataView, offset: number): void {
    this.words.forEach((word, index) => {
      const at = offset + index * 4;
      if (this.kinds[index] === "f32") view.setFloat32(at, word, true);
      else view.setUint32(at, word >>> 0, true);
    });
  }
}

export interface Dispatch {
  file: string;
  entryPoint: string;
  constants?: Record<string, number>;
  params: Params;
  bindings: readonly (GpuTensor | GPUBuffer)[];
  workgroups: readonly [number, number?, number?];
}

const UNIFORM_ARENA_BYTES = 1 << 20;
/**
 * Recorded work is submitted every this many dispatches, so the GPU starts on a forward while the host
 * still records the rest of it: a 64-row forward of a 1B model is ~400 dispatches and took 4-6 ms to
 * record on the H200's host, time the GPU otherwise spent idle (bench/forward-profile.ts).
 */
const DISPATCHES_PER_SUBMIT = 64;
/** Bind groups kept; decode reuses the same few hundred every step. Cleared when it overflows. */
const BIND_GROUP_CACHE_LIMIT = 16_384;

export class GpuRuntime {
  readonly kernels: KernelLibrary;
  readonly device: GPUDevice;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private readonly pool = new Map<number, GPUBuffer[]>();
  private readonly uniformAlignment: number;
  private readonly arena: GPUBuffer;
  private readonly arenaStaging = new ArrayBuffer(UNIFORM_ARENA_BYTES);
  private arenaUsed = 0;
  private dispatchesSinceSubmit = 0;
  /** A benchmark's timed pass is open: its dispatches must stay in one pass, so no early submit. */
  private timedPassOpen = false;
  /** startTracing's query set, and the kernel of each traced dispatch so far. */
  private trace: { querySet: GPUQuerySet; kernels: string[] } | null = null;
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  /** Pool buffers released while recorded work that may read them is not yet submitted. */
  private readonly releasedSinceSubmit = new Set<GPUBuffer>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 1;
  /** Staging memory for bulk transfers (uploadBulk, downloadBulk), kept between them. */
  readonly bulk: BulkTransfers;
  /** Read once a device exists: Dawn installs the GPU* globals when it is created. */
  private readonly storageUsage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
  /** Bytes held, by role, for the memory report. */
  readonly bytes = { weights: 0, activations: 0, kvCache: 0 };

  constructor(readonly gpu: GpuDevice) {
    this.device = gpu.device;
    const defines = new Set<string>();
    if (gpu.hasSubgroups) defines.add("SUBGROUPS");
    if (gpu.hasF16) defines.add("F16");
    if (gpu.hasMatrix16) defines.add("SUBGROUP_MATRIX");
    this.kernels = new KernelLibrary(this.device, defines);
    this.uniformAlignment = gpu.limits.minUniformBufferOffsetAlignment;
    this.arena = this.device.createBuffer({
      size: UNIFORM_ARENA_BYTES,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    this.device.addEventListener("uncapturederror", (event) => {
      const message = event.error.message;
      this.firstError ??= `${message} (while recording ${this.lastKernel})`;
    });
    // A staging buffer's copy goes into the command stream after the work recorded so far, and is
    // submitted at once (the staging buffer can only be mapped again after that).
    this.bulk = new BulkTransfers(this.device, (source, sourceOffset, destination, destinationOffset, bytes) => {
      this.endPass();
      this.commandEncoder().copyBufferToBuffer(source, sourceOffset, destination, destinationOffset, bytes);
      this.submit();
    });
  }

  private firstError: string | null = null;
  private lastKernel = "nothing";

  /** Raise the first validation error since the last check. */
  private throwIfFailed(): void {
    if (this.firstError === null) return;
    const compileErrors = [...this.kernels.compileErrors.values()];
    const message =
      compileErrors.length > 0 ? `${this.firstError}; compiler: ${compileErrors.join("; ")}` : this.firstError;
    this.firstError = null;
    throw new Error(`webgpu: ${message}`);
  }

  get maxBindingBytes(): number {
    return this.gpu.limits.maxStorageBufferBindingSize;
  }

  /** A new tensor; activations come from a pool of power-of-two buffers, weights get their own. */
  allocate(shape: readonly number[], dtype: DType, role: "weights" | "activations" = "activations"): GpuTensor {
    const bytes = Math.max(4, shape.reduce((product, dim) => product * dim, 1) * DTYPE_BYTES[dtype]);
    const alignedBytes = Math.ceil(bytes / 4) * 4;
    if (alignedBytes > this.gpu.limits.maxBufferSize) {
      throw new Error(
        `tensor of ${alignedBytes} bytes exceeds this device's maxBufferSize (${this.gpu.limits.maxBufferSize})`,
      );
    }
    if (role === "weights") {
      const buffer = this.device.createBuffer({ size: alignedBytes, usage: this.storageUsage });
      this.bytes.weights += alignedBytes;
      return new GpuTensor(shape, dtype, buffer, 0, "weights");
    }
    const sizeClass = 2 ** Math.ceil(Math.log2(alignedBytes));
    const buffer = this.pool.get(sizeClass)?.pop() ?? this.createPooled(sizeClass);
    return new GpuTensor(shape, dtype, buffer, 0, "activations");
  }

  private createPooled(sizeClass: number): GPUBuffer {
    this.bytes.activations += sizeClass;
    return this.device.createBuffer({ size: sizeClass, usage: this.storageUsage });
  }

  /**
   * Give a tensor's buffer back. Safe while recorded work still reads it: dispatches run in recording
   * order, so a later kernel writing the reused buffer runs after every earlier reader; a host upload
   * into it first submits that work (see `upload`).
   */
  release(tensor: GpuTensor): void {
    if (tensor.freed || tensor.role === "view") return;
    tensor.freed = true;
    if (tensor.role === "weights") {
      this.bytes.weights -= tensor.buffer.size;
      // Cached bind groups may name the buffer; weights are released rarely, so start the cache afresh.
      this.bindGroups.clear();
      this.flushThen(() => tensor.buffer.destroy());
      return;
    }
    if (this.encoder) this.releasedSinceSubmit.add(tensor.buffer);
    const list = this.pool.get(tensor.buffer.size) ?? [];
    list.push(tensor.buffer);
    this.pool.set(tensor.buffer.size, list);
  }

  /**
   * Write host data into a tensor. queue.writeBuffer runs ahead of work recorded but not submitted, so
   * writing into a pool buffer that such work still reads (its previous tensor was released after the
   * work was recorded) would change what that work sees: submit that work first.
   */
  upload(tensor: GpuTensor, data: ArrayBufferView): void {
    if (this.releasedSinceSubmit.has(tensor.buffer)) this.submit();
    this.device.queue.writeBuffer(tensor.buffer, tensor.byteOffset, data.buffer, data.byteOffset, data.byteLength);
  }

  /**
   * Write many host bytes into a tensor through reused mapped buffers (`bulk`, see staging-rings.ts):
   * ~4× the rate of `upload` on an H200 host, for bulk data such as a reloaded agent's KV blocks. Each
   * piece's copy is recorded in the command stream, so it lands after the work recorded before it and
   * before the work recorded after this resolves. Resolves when `data` may be reused.
   */
  async uploadBulk(tensor: GpuTensor, byteOffset: number, data: Uint8Array): Promise<void> {
    await this.bulk.upload(tensor.buffer, tensor.byteOffset + byteOffset, data);
  }

  /**
   * Read bytes [byteOffset, byteOffset + into.byteLength) of a tensor, after all work recorded so
   * far, into `into`, through reused mapped buffers, several pieces in flight at once. The tensor must
   * stay unreleased until this resolves (later pieces are copied as buffers free up).
   */
  async downloadBulk(tensor: GpuTensor, byteOffset: number, into: Uint8Array): Promise<void> {
    await this.bulk.download(tensor.buffer, tensor.byteOffset + byteOffset, into);
    this.throwIfFailed();
  }

  dispatch(work: Dispatch): void {
    this.lastKernel = `${work.file}:${work.entryPoint}`;
    const kernel = this.kernels.kernel(work.file, work.entryPoint, work.constants);
    if (work.params.words.length * 4 > PARAMS_BINDING_BYTES) {
      throw new Error(`${this.lastKernel}: ${work.params.words.length} params exceed ${PARAMS_BINDING_BYTES / 4}`);
    }
    const slot = Math.max(PARAMS_BINDING_BYTES, this.uniformAlignment);
    if (this.arenaUsed + slot > UNIFORM_ARENA_BYTES) this.submit();
    const paramOffset = this.arenaUsed;
    work.params.writeTo(new DataView(this.arenaStaging), paramOffset);
    this.arenaUsed += slot;

    if (this.trace && this.trace.kernels.length * 2 < this.trace.querySet.count) {
      // Traced: this dispatch alone in a pass whose start and end write timestamps.
      const index = this.trace.kernels.length;
      this.trace.kernels.push(`${this.lastKernel} ${work.workgroups.join("×")}`);
      this.beginTimedPass({
        querySet: this.trace.querySet,
        beginningOfPassWriteIndex: 2 * index,
        endOfPassWriteIndex: 2 * index + 1,
      });
    }
    const pass = this.computePass();
    pass.setPipeline(kernel.pipeline);
    pass.setBindGroup(0, this.bindGroup(kernel.file, kernel.layout, work.bindings), [paramOffset]);
    const [x, y = 1, z = 1] = work.workgroups;
    pass.dispatchWorkgroups(x, y, z);
    if (this.trace) this.endTimedPass();
    if (++this.dispatchesSinceSubmit >= DISPATCHES_PER_SUBMIT && !this.timedPassOpen) this.submit();
  }

  /**
   * For benchmarks (needs timestamp-query): each of the next `capacity` dispatches (at most 2048, half
   * the largest query set) runs alone in a compute pass that writes timestamps, until `stopTracing`
   * reads them back. Isolating dispatches removes the overlap between neighbours, so the times add up
   * to somewhat more than a normal pass.
   */
  startTracing(capacity: number): void {
    this.endPass();
    this.trace = { querySet: this.device.createQuerySet({ type: "timestamp", count: 2 * capacity }), kernels: [] };
  }

  /** The traced dispatches in order: kernel (file:entry point workgroups) and GPU time in µs. */
  async stopTracing(): Promise<{ kernel: string; micros: number }[]> {
    const trace = this.trace;
    if (!trace) return [];
    this.trace = null;
    this.endPass();
    const count = trace.kernels.length * 2;
    if (count === 0) {
      trace.querySet.destroy();
      return [];
    }
    const resolved = this.device.createBuffer({
      size: count * 8,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    this.resolveQueries(trace.querySet, 0, count, resolved);
    const ticks = new BigInt64Array(await this.readBytes(new GpuTensor([count * 2], "u32", resolved, 0, "view")));
    resolved.destroy();
    trace.querySet.destroy();
    return trace.kernels.map((kernel, i) => ({ kernel, micros: Number(ticks[2 * i + 1]! - ticks[2 * i]!) / 1000 }));
  }

  private bindGroup(file: string, layout: GPUBindGroupLayout, bindings: Dispatch["bindings"]): GPUBindGroup {
    const resources = bindings.map(bufferBinding);
    const key = `${file}|${resources.map((r) => `${this.bufferId(r.buffer)}@${r.offset ?? 0}+${r.size ?? -1}`).join(",")}`;
    let group = this.bindGroups.get(key);
    if (!group) {
      if (this.bindGroups.size >= BIND_GROUP_CACHE_LIMIT) this.bindGroups.clear();
      const entries: GPUBindGroupEntry[] = [
        { binding: 0, resource: { buffer: this.arena, offset: 0, size: PARAMS_BINDING_BYTES } },
        ...resources.map((resource, index) => ({ binding: index + 1, resource })),
      ];
      group = this.device.createBindGroup({ layout, entries, label: file });
      this.bindGroups.set(key, group);
    }
    return group;
  }

  private bufferId(buffer: GPUBuffer): number {
    let id = this.bufferIds.get(buffer);
    if (id === undefined) {
      id = this.nextBufferId++;
      this.bufferIds.set(buffer, id);
    }
    return id;
  }

  copy(
    source: GpuTensor,
    sourceOffset: number,
    destination: GpuTensor,
    destinationOffset: number,
    bytes: number,
  ): void {
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(
      source.buffer,
      source.byteOffset + sourceOffset,
      destination.buffer,
      destination.byteOffset + destinationOffset,
      bytes,
    );
  }

  /**
   * For benchmarks: dispatches recorded from here until `endTimedPass` go into one compute pass whose
   * start and end write GPU timestamps, so a measurement excludes submission and CPU time.
   */
  beginTimedPass(timestampWrites: GPUComputePassTimestampWrites): void {
    this.endPass();
    this.pass = this.commandEncoder().beginComputePass({ timestampWrites });
    this.timedPassOpen = true;
  }

  endTimedPass(): void {
    this.endPass();
    this.timedPassOpen = false;
  }

  /** Record a query-set resolve (timestamps → buffer) after the passes recorded so far. */
  resolveQueries(querySet: GPUQuerySet, first: number, count: number, destination: GPUBuffer, offset = 0): void {
    this.endPass();
    this.commandEncoder().resolveQuerySet(querySet, first, count, destination, offset);
  }

  /** Send everything recorded so far to the GPU. */
  submit(): void {
    if (!this.encoder) return;
    this.endPass();
    if (this.arenaUsed > 0) this.device.queue.writeBuffer(this.arena, 0, this.arenaStaging, 0, this.arenaUsed);
    this.device.queue.submit([this.encoder.finish()]);
    this.encoder = null;
    this.releasedSinceSubmit.clear();
    this.arenaUsed = 0;
    this.dispatchesSinceSubmit = 0;
  }

  async finish(): Promise<void> {
    this.submit();
    await this.device.queue.onSubmittedWorkDone();
    this.throwIfFailed();
  }

  /** Bytes [offset, offset+length) of a tensor's buffer, after all recorded work. */
  async readBytes(tensor: GpuTensor, length = tensor.byteLength, offset = 0): Promise<ArrayBuffer> {
    const paddedLength = Math.ceil(length / 4) * 4;
    const staging = this.device.createBuffer({
      size: paddedLength,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(tensor.buffer, tensor.byteOffset + offset, staging, 0, paddedLength);
    this.submit();
    await this.device.queue.onSubmittedWorkDone();
    this.throwIfFailed();
    await staging.mapAsync(GPUMapMode.READ);
    const copy = staging.getMappedRange().slice(0, length);
    staging.destroy();
    return copy;
  }

  private flushThen(action: () => void): void {
    this.submit();
    void this.device.queue.onSubmittedWorkDone().then(action);
  }

  private commandEncoder(): GPUCommandEncoder {
    this.encoder ??= this.device.createCommandEncoder();
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    this.pass ??= this.commandEncoder().beginComputePass();
    return this.pass;
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  dispose(): void {
    this.submit();
    for (const buffers of this.pool.values()) for (const buffer of buffers) buffer.destroy();
    this.pool.clear();
    this.arena.destroy();
    this.bulk.dispose();
  }
}

function bufferBinding(binding: GpuTensor | GPUBuffer): GPUBufferBinding {
  if (binding instanceof GpuTensor) {
    // Bind whole 4-byte words; 2-byte tensors of odd length round up inside their (padded) buffer.
    const size = Math.ceil(binding.byteLength / 4) * 4;
    return { buffer: binding.buffer, offset: binding.byteOffset, size: Math.max(4, size) };
  }
  return { buffer: binding };
}
