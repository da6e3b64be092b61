/**
 * Progress for long operations (downloads, model loads): a redrawn bar with bytes, rate and ETA on a
 * terminal; on anything else (a log file, CI) a plain line every few seconds, so logs stay readable.
 */
export interface Progress {
  /** Advance by `bytes`. */
  advance(bytes: number): void;
  done(): void;
}

export interface ProgressOptions {
  label: string;
  totalBytes: number;
  stream?: NodeJS.WriteStream;
  /** Seconds between plain lines when the stream is not a terminal. */
  lineIntervalSeconds?: number;
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "--:--";
  const whole = Math.round(seconds);
  const minutes = Math.floor(whole / 60);
  return `${minutes}:${String(whole % 60).padStart(2, "0")}`;
}

export function createProgress({
  label,
  totalBytes,
  stream = process.stderr,
  lineIntervalSeconds = 5,
}: ProgressOptions): Progress {
  const started = performance.now();
  let done = 0;
  let lastDraw = 0;
  const describe = () => {
    const seconds = (performance.now() - started) / 1000;
    const rate = done / Math.max(seconds, 1e-3);
    const eta = (totalBytes - done) / rate;
    const percent = totalBytes > 0 ? Math.min(100, (100 * done) / totalBytes) : 100;
    return {
      percent,
      text: `${formatBytes(done)} / ${formatBytes(totalBytes)}  ${formatBytes(rate)}/s  ETA ${formatDuration(eta)}`,
    };
  };
  const draw = (force: boolean) => {
    const now = performance.now();
    if (stream.isTTY) {
      if (!force && now - lastDraw < 100) return;
      const { percent, text } = describe();
      const width = 24;
      const filled = Math.round((percent / 100) * width);
      stream.write(
        `\r${label} [${"#".repeat(filled)}${" ".repeat(width - filled)}] ${percent.toFixed(0).padStart(3)}%  ${text}\x1b[K`,
      );
    } else {
      if (!force && now - lastDraw < lineIntervalSeconds * 1000) return;
      const { percent, text } = describe();
      stream.write(`${label}: ${percent.toFixed(0)}%  ${text}\n`);
    }
    lastDraw = now;
  };
  return {
    advance(bytes) {
      done += bytes;
      draw(false);
    },
    done() {
      draw(true);
      if (stream.isTTY) stream.write("\n");
    },
  };
}
