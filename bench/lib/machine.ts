/** The machine a benchmark ran on, for its JSON and for bench/RESULTS.md. */
import { readFileSync } from "node:fs";
import { cpus, release, totalmem, type } from "node:os";

export interface MachineDescription {
  /** CPU model as /proc/cpuinfo names it (Linux), else as Node reports it. */
  cpu: string;
  /** Logical CPUs this process may use. */
  cores: number;
  memoryGiB: number;
  os: string;
  node: string;
}

export function describeMachine(): MachineDescription {
  let cpu = cpus()[0]?.model ?? "unknown";
  try {
    const name = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1];
    if (name) cpu = name.trim();
  } catch {
    // Not Linux: Node's name is all there is.
  }
  return {
    cpu,
    cores: cpus().length,
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    os: `${type()} ${release()}`,
    node: process.version,
  };
}
