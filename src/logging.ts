/**
 * A small leveled logger writing one line per event to stderr (stdout stays free for command output
 * such as `agent-memory config`). Levels follow the user guide: DEBUG explains decisions, INFO is one
 * line per request, WARNING/ERROR/CRITICAL are problems of growing weight.
 */
import type { LogLevel } from "./config/settings.js";

const RANK: Record<LogLevel, number> = { DEBUG: 10, INFO: 20, WARNING: 30, ERROR: 40, CRITICAL: 50 };

export interface Logger {
  readonly level: LogLevel;
  debug(message: string): void;
  info(message: string): void;
  warning(message: string): void;
  error(message: string): void;
  critical(message: string): void;
  isEnabled(level: LogLevel): boolean;
  /** A logger for one component; its lines carry `[scope]`. */
  child(scope: string): Logger;
}

export type LogSink = (line: string) => void;

const stderrSink: LogSink = (line) => process.stderr.write(`${line}\n`);

export function createLogger(level: LogLevel, sink: LogSink = stderrSink, scope = "agent-memory"): Logger {
  const threshold = RANK[level];
  const write = (lineLevel: LogLevel, message: string) => {
    if (RANK[lineLevel] < threshold) return;
    sink(`${new Date().toISOString()} ${lineLevel.padEnd(8)} [${scope}] ${message}`);
  };
  return {
    level,
    debug: (message) => write("DEBUG", message),
    info: (message) => write("INFO", message),
    warning: (message) => write("WARNING", message),
    error: (message) => write("ERROR", message),
    critical: (message) => write("CRITICAL", message),
    isEnabled: (candidate) => RANK[candidate] >= threshold,
    child: (childScope) => createLogger(level, sink, childScope),
  };
}
