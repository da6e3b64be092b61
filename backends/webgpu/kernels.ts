/**
 * WGSL kernels from kernels/*.wgsl, compiled on first use and cached per variant. A kernel file may
 * hold variants selected by `//#if NAME` / `//#else` / `//#endif` lines on defines that the runtime
 * sets from the device (SUBGROUPS, F16); pipeline-overridable constants (`override`) carry sizes.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** kernels/ from both backends/webgpu/ (sources under test) and dist/backends/webgpu/ (compiled). */
function kernelsDirectory(): URL {
  for (const relative of ["../../kernels/", "../../../kernels/"]) {
    const candidate = new URL(relative, import.meta.url);
    try {
      readFileSync(new URL("README.md", candidate));
      return candidate;
    } catch {
      // not here; try one level up
    }
  }
  throw new Error("cannot find the kernels/ folder of agent-memory");
}

/** Resolves `//#if` blocks; nested blocks are allowed. Exported for its own test. */
export function preprocess(source: string, defines: ReadonlySet<string>, file = "<wgsl>"): string {
  const out: string[] = [];
  const stack: { active: boolean; parentActive: boolean }[] = [];
  const active = () => stack.every((frame) => frame.active);
  source.split("\n").forEach((line, index) => {
    const directive = line.trim().match(/^\/\/#(if|else|endif)\b\s*(\w*)/);
    if (!directive) {
      if (active()) out.push(line);
      return;
    }
    const [, keyword, name] = directive;
    if (keyword === "if") stack.push({ active: defines.has(name!), parentActive: active() });
    else if (stack.length === 0) throw new Error(`${file}:${index + 1}: //#${keyword} without //#if`);
    else if (keyword === "else") stack[stack.length - 1]!.active = !stack[stack.length - 1]!.active;
    else stack.pop();
    out.push("");
  });
  if (stack.length > 0) throw new Error(`${file}: //#if without //#endif`);
  return out.join("\n");
}

/** How a file declares one binding of group 0. */
export interface DeclaredBinding {
  binding: number;
  kind: "uniform" | "read-only-storage" | "storage";
}

const BINDING_DECLARATION =
  /@group\(0\)\s*@binding\((\d+)\)\s*var\s*<\s*(uniform|storage)\s*(?:,\s*(read_write|read))?\s*>/g;

/** The group-0 bindings a (preprocessed) WGSL source declares, in binding order. */
export function declaredBindings(source: string): DeclaredBinding[] {
  const found = new Map<number, DeclaredBinding>();
  for (const match of source.matchAll(BINDING_DECLARATION)) {
    const binding = Number(match[1]);
    const kind = match[2] === "uniform" ? "uniform" : match[3] === "read_write" ? "storage" : "read-only-storage";
    found.set(binding, { binding, kind });
  }
  return [...found.values()].sort((a, b) => a.binding - b.binding);
}

/** The params uniform is bound with a dynamic offset into the runtime's arena, this many bytes wide. */
export const PARAMS_BINDING_BYTES = 256;

export interface Kernel {
  pipeline: GPUComputePipeline;
  /** One explicit layout per file, shared by its entry points, so bind groups can be cached per file. */
  layout: GPUBindGroupLayout;
  file: string;
}

export class KernelLibrary {
  private readonly directory = kernelsDirectory();
  private readonly sources = new Map<string, string>();
  private readonly pipelines = new Map<string, Kernel>();
  private readonly layouts = new Map<string, { bindGroup: GPUBindGroupLayout; pipeline: GPUPipelineLayout }>();

  constructor(
    private readonly device: GPUDevice,
    private readonly defines: ReadonlySet<string>,
  ) {}

  /** Pipelines built so far (one per file, entry point and set of constants). */
  get pipelineCount(): number {
    return this.pipelines.size;
  }

  kernel(file: string, entryPoint: string, constants: Record<string, number> = {}): Kernel {
    const key = `${file}:${entryPoint}:${JSON.stringify(constants)}`;
    let kernel = this.pipelines.get(key);
    if (!kernel) {
      const module = this.module(file);
      const layout = this.layout(file);
      const pipeline = this.device.createComputePipeline({
        layout: layout.pipeline,
        compute: { module, entryPoint, constants },
        label: `${file}:${entryPoint}`,
      });
      kernel = { pipeline, layout: layout.bindGroup, file };
      this.pipelines.set(key, kernel);
    }
    return kernel;
  }

  /**
   * The file's declared bindings as an explicit layout (binding 0, the params uniform, with a dynamic
   * offset). Explicit rather than "auto": an entry point may leave a declared binding unused, and bind
   * groups stay valid for every entry point of the file, so they can be cached.
   */
  private layout(file: string): { bindGroup: GPUBindGroupLayout; pipeline: GPUPipelineLayout } {
    let layout = this.layouts.get(file);
    if (!layout) {
      const declared = declaredBindings(this.source(file));
      if (declared[0]?.binding !== 0 || declared[0].kind !== "uniform") {
        throw new Error(`kernels/${file}: binding 0 must be the uniform params struct`);
      }
      const bindGroup = this.device.createBindGroupLayout({
        label: file,
        entries: declared.map(({ binding, kind }) => ({
          binding,
          visibility: GPUShaderStage.COMPUTE,
          buffer: { type: kind, hasDynamicOffset: binding === 0 },
        })),
      });
      layout = { bindGroup, pipeline: this.device.createPipelineLayout({ bindGroupLayouts: [bindGroup] }) };
      this.layouts.set(file, layout);
    }
    return layout;
  }

  private readonly modules = new Map<string, GPUShaderModule>();
  /** Compiler messages of kernels that failed to compile, by file, for the error raised on submit. */
  readonly compileErrors = new Map<string, string>();

  private module(file: string): GPUShaderModule {
    let module = this.modules.get(file);
    if (!module) {
      module = this.device.createShaderModule({ code: this.source(file), label: file });
      this.modules.set(file, module);
      // Dawn reports a bad shader only as "invalid pipeline"; keep the compiler's own lines and
      // positions so the error raised later says what is wrong and where.
      void module.getCompilationInfo().then((info) => {
        const errors = info.messages.filter((message) => message.type === "error");
        if (errors.length > 0) {
          this.compileErrors.set(
            file,
            errors.map((message) => `${file}:${message.lineNum}:${message.linePos}: ${message.message}`).join("; "),
          );
        }
      });
    }
    return module;
  }

  private source(file: string): string {
    let source = this.sources.get(file);
    if (source === undefined) {
      const raw = readFileSync(fileURLToPath(new URL(file, this.directory)), "utf8");
      const enables = [
        this.defines.has("F16") ? "enable f16;" : "",
        this.defines.has("SUBGROUPS") ? "enable subgroups;" : "",
        this.defines.has("SUBGROUP_MATRIX") && raw.includes("subgroupMatrix")
          ? "enable chromium_experimental_subgroup_matrix;"
          : "",
      ];
      source = `${enables.join("\n")}\n${preprocess(raw, this.defines, file)}`;
      this.sources.set(file, source);
    }
    return source;
  }
}
