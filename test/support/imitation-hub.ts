/**
 * A local HTTP server that answers like the Hugging Face hub's file endpoints for one repo: the tree
 * listing and `resolve` with byte ranges, ETags and the commit id. It records the requests it saw, so
 * tests can tell a resumed download (a Range starting past 0) from a fresh one.
 */
import { createHash } from "node:crypto";
import { createServer, type Server } from "node:http";

export interface HubFile {
  path: string;
  content: Buffer;
}

export interface ImitationHub {
  url: string;
  commit: string;
  requests: { method: string; path: string; range?: string }[];
  /** Stop answering file bodies after this many bytes (to simulate a dropped connection). */
  cutAfterBytes: number | null;
  close(): Promise<void>;
}

export async function startImitationHub(repo: string, files: HubFile[]): Promise<ImitationHub> {
  const commit = createHash("sha1").update(repo).digest("hex");
  const oid = (content: Buffer) => createHash("sha256").update(content).digest("hex");
  const hub: Omit<ImitationHub, "url" | "close"> = { commit, requests: [], cutAfterBytes: null };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://hub");
    hub.requests.push({ method: req.method ?? "GET", path: url.pathname, range: req.headers.range });
    if (url.pathname.startsWith(`/api/models/${repo}/tree/`)) {
      const listing = files.map((file) => ({
        type: "file",
        path: file.path,
        size: file.content.length,
        oid: oid(file.content),
        lfs: file.path.endsWith(".safetensors")
          ? { oid: oid(file.content), size: file.content.length, pointerSize: 130 }
          : undefined,
        lastCommit: { id: commit, title: "upload", date: "2026-01-01T00:00:00.000Z" },
      }));
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(listing));
      return;
    }
    const prefix = `/${repo}/resolve/`;
    if (url.pathname.startsWith(prefix)) {
      const path = url.pathname.slice(prefix.length).split("/").slice(1).join("/");
      const file = files.find((candidate) => candidate.path === path);
      if (!file) {
        res.writeHead(404, { "x-error-code": "EntryNotFound" });
        res.end();
        return;
      }
      const headers = { etag: `"${oid(file.content)}"`, "x-repo-commit": commit, "accept-ranges": "bytes" };
      const range = req.headers.range?.match(/^bytes=(\d+)-(\d*)$/);
      const start = range ? Number(range[1]) : 0;
      const end = range && range[2] ? Number(range[2]) : file.content.length - 1;
      const body = req.method === "HEAD" ? Buffer.alloc(0) : file.content.subarray(start, end + 1);
      res.writeHead(range ? 206 : 200, {
        ...headers,
        "content-length": String(req.method === "HEAD" ? file.content.length : body.length),
        ...(range ? { "content-range": `bytes ${start}-${end}/${file.content.length}` } : {}),
      });
      if (hub.cutAfterBytes !== null && body.length > hub.cutAfterBytes) {
        // Send part of the body, let the client consume it, then drop the connection — as a stalled
        // network does (dropping at once would discard what the client had not yet read).
        res.write(body.subarray(0, hub.cutAfterBytes));
        setTimeout(() => res.destroy(), 300);
        return;
      }
      res.end(body);
      return;
    }
    res.writeHead(404);
    res.end();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return Object.assign(hub, {
    url: `http://127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  });
}
