/**
 * What a protocol handler answers, before HTTP: a JSON body, or a stream of server-sent events with
 * the frame to send when the stream has been quiet for a while (Anthropic's `ping` event, an SSE
 * comment for OpenAI), so clients and proxies do not time out during a long prefill.
 */
export interface SseFrame {
  /** The `event:` line; absent for OpenAI's data-only frames. */
  event?: string;
  /** The `data:` payload (one line of JSON, or OpenAI's `[DONE]`); absent for a comment frame. */
  data?: string;
  /** An SSE comment (`: text`), which every client ignores. */
  comment?: string;
}

export type ProtocolResponse =
  | { kind: "json"; status?: number; body: unknown; headers?: Record<string, string> }
  | { kind: "stream"; frames: AsyncIterable<SseFrame>; heartbeat: SseFrame };

export const json = (body: unknown, status = 200): ProtocolResponse => ({ kind: "json", status, body });

export function encodeSseFrame(frame: SseFrame): string {
  let text = "";
  if (frame.comment !== undefined) text += `: ${frame.comment}\n`;
  if (frame.event !== undefined) text += `event: ${frame.event}\n`;
  if (frame.data !== undefined) text += `data: ${frame.data}\n`;
  return `${text}\n`;
}

/** A data frame carrying JSON, optionally named. */
export function dataFrame(payload: unknown, event?: string): SseFrame {
  return event === undefined ? { data: JSON.stringify(payload) } : { event, data: JSON.stringify(payload) };
}
