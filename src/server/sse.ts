/**
 * Server-sent events over HTTP: a protocol's frames as a streamed response body, with the protocol's
 * heartbeat frame sent whenever the stream has been quiet for `heartbeatMs` (a long prefill, a reload
 * from disk), so clients and proxies with idle timeouts keep the connection. When the client goes away
 * the frame iterator is closed, which cancels the generation behind it.
 */
import { encodeSseFrame, type SseFrame } from "../protocols/response.js";

export const DEFAULT_HEARTBEAT_MS = 5000;

const QUIET = Symbol("quiet");

export function sseStream(
  frames: AsyncIterable<SseFrame>,
  heartbeat: SseFrame,
  heartbeatMs = DEFAULT_HEARTBEAT_MS,
): ReadableStream<Uint8Array> {
  const iterator = frames[Symbol.asyncIterator]();
  const encoder = new TextEncoder();
  let pending: Promise<IteratorResult<SseFrame>> | null = null;
  let timer: NodeJS.Timeout | undefined;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      pending ??= iterator.next();
      const quiet = new Promise<typeof QUIET>((resolve) => (timer = setTimeout(() => resolve(QUIET), heartbeatMs)));
      let result: IteratorResult<SseFrame> | typeof QUIET;
      try {
        result = await Promise.race([pending, quiet]);
      } catch (error) {
        // The protocols turn generation failures into error frames; anything else ends the stream.
        controller.error(error);
        return;
      } finally {
        clearTimeout(timer);
      }
      if (result === QUIET) {
        controller.enqueue(encoder.encode(encodeSseFrame(heartbeat)));
        return;
      }
      pending = null;
      if (result.done) controller.close();
      else controller.enqueue(encoder.encode(encodeSseFrame(result.value)));
    },
    async cancel() {
      clearTimeout(timer);
      await iterator.return?.();
    },
  });
}

export function sseResponse(stream: ReadableStream<Uint8Array>, headers: Headers): Response {
  headers.set("content-type", "text/event-stream; charset=utf-8");
  headers.set("cache-control", "no-cache");
  headers.set("x-accel-buffering", "no");
  return new Response(stream, { status: 200, headers });
}
