/**
 * The baseline of the reload benchmarks: `dd` reading a file to /dev/null in 8 MiB blocks. Its time
 * is the one dd itself reports, from its first read to its last: for a 36 MB file, the process start
 * that a wall-clock timing would add is as long as the read (dd "reached" 0.7 GB/s on such a file on
 * the H200's host that way, against 6–7 GB/s on large ones).
 */
import { spawnSync } from "node:child_process";
import { statSync } from "node:fs";

export interface DdRead {
  bytes: number;
  /** dd's own elapsed time. */
  ms: number;
}

/** The median of `runs` reads of `file` by dd. */
export function ddRead(file: string, runs = 3): DdRead {
  const times: number[] = [];
  for (let run = 0; run < runs; run++) {
    const result = spawnSync("dd", [`if=${file}`, "of=/dev/null", "bs=8M"], {
      encoding: "utf8",
      env: { ...process.env, LC_ALL: "C" },
    });
    // "37748736 bytes (38 MB, 36 MiB) copied, 0.0123 s, 3.1 GB/s"
    const seconds = /copied, ([0-9.e+-]+) s/.exec(result.stderr ?? "")?.[1];
    if (result.status !== 0 || seconds === undefined) {
      throw new Error(`dd on ${file} failed (status ${result.status}): ${result.stderr?.trim()}`);
    }
    times.push(Number(seconds) * 1000);
  }
  times.sort((a, b) => a - b);
  return { bytes: statSync(file).size, ms: times[Math.floor(times.length / 2)]! };
}
