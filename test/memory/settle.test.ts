/**
 * Settling an agent's turn (Engine.beginSettle): after a request's `done`, one more row writes the
 * K/V of the last token it generated, so the agent's next turn prefills its new tokens only. The
 * row's K/V must equal a prefill's; a follow-up, a lookup of shared blocks or a deletion that comes
 * before the row has run must wait for it; the follow-up's forward must hold its new tokens only; and
 * a failed settle row loses that row, not the answered turn.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import type { Engine } from "../../src/engine/engine.js";
import { samplingParams } from "../../src/engine/sampling.js";
import type { ForwardBatch } from "../../src/model/architecture.js";
import { AgentStore } from "../../src/memory/persistence.js";
import { scratchDir } from "../support/cli.js";
import { expectSameBlocks, useMemoryFixture } from "../support/memory-fixture.js";

describe("settling an agent's turn", () => {
  const { engineWith, ask, reference, heldKv, uncachedKv, text, system } = useMemoryFixture();

  it("writes the last generated token's K/V as a prefill of the same tokens would", async () => {
    const cacheDir = scratchDir();
    const { engine, memory } = engineWith({ cacheDir });
    const prompt = [...system(), ...text(" User: count to ten.")];
    // Prompt and answer end on a block boundary, so the settled token's block is a full one and compared.
    const maxTokens = 16 + ((16 - (prompt.length % 16)) % 16);
    const turn = await ask(engine, { agentId: "settled", tenant: "t1" }, prompt, maxTokens);
    const held = await heldKv(memory, cacheDir, "t1", "settled");
    expect(held.tokens).toEqual([...prompt, ...turn.tokens]);
    expect(held.tokens.length % 16).toBe(0);

    // The oracle prefills the same tokens as a prompt: every one of them, the last answer token too.
    const expected = await uncachedKv(held.tokens, 1);
    expect(expected.tokens.slice(0, held.tokens.length)).toEqual(held.tokens);
    expect(held.blocks.length).toBe(held.tokens.length / 16);
    expectSameBlocks(held.blocks, expected.blocks);
  }, 60_000);

  /** Records the rows of every forward of `engine`'s model (shared by every engine of the fixture). */
  const spyOnForward = (engine: Engine, onForward: (batch: ForwardBatch) => void) => {
    const model = (engine as unknown as { model: { forward: (batch: ForwardBatch, ...rest: never[]) => unknown } })
      .model;
    const forward = model.forward;
    model.forward = function (this: unknown, batch: ForwardBatch, ...rest: never[]) {
      onForward(batch);
      return forward.call(this, batch, ...rest);
    };
    return () => (model.forward = forward);
  };

  it("gives a follow-up sent the moment its answer arrives a forward of its new tokens only", async () => {
    const { engine } = engineWith();
    const scope = { agentId: "follow-up", tenant: "t1" };
    const first = [...system(), ...text(" User: list the files.")];
    const newTokens = text(" User: now run the tests, please.");
    // The oracle's runs first (the model is shared), so that nothing comes between answer and follow-up.
    const answerTokens = await reference(first);
    const followUp = [...first, ...answerTokens, ...newTokens];
    const expected = await reference(followUp);

    const rows: number[] = [];
    const restore = spyOnForward(engine, (batch) => rows.push(batch.tokens.length));
    try {
      const answer = await ask(engine, scope, first);
      expect(answer.tokens).toEqual(answerTokens);
      const turn = await ask(engine, scope, followUp);
      expect(turn.cached).toBe(first.length + answer.tokens.length);
      expect(turn.tokens).toEqual(expected);
      await engine.settled();
    } finally {
      restore();
    }
    // Two prompts (one chunk each), then single rows: decode steps and the settle rows. Never the new
    // tokens and one more.
    expect(rows.filter((count) => count > 1)).toEqual([first.length, newTokens.length]);
  }, 60_000);

  it("keeps the answered turn when the step of its settle row fails", async () => {
    const { engine, memory } = engineWith();
    const scope = { agentId: "unlucky", tenant: "t1" };
    const prompt = [...system(), ...text(" User: hi.")];
    let failNext = false;
    const restore = spyOnForward(engine, () => {
      if (failNext) {
        failNext = false;
        throw new Error("injected: the device ran out of memory");
      }
    });
    try {
      const events = engine.generate({
        promptTokens: prompt,
        maxTokens: 12,
        sampling: samplingParams({ temperature: 0 }),
        ignoreEos: true,
        memory: scope,
      });
      const tokens: number[] = [];
      for await (const event of events) {
        if (event.type === "delta") tokens.push(...event.tokenIds);
        // The step after `done` is the settle row's: it fails.
        if (event.type === "done") failNext = true;
      }
      await engine.settled();
      expect(failNext).toBe(false);
      // Everything but the lost row is kept: the prompt and every generated token but the last.
      expect(memory.get("t1", "unlucky")?.tokens).toBe(prompt.length + tokens.length - 1);
      const followUp = [...prompt, ...tokens, ...text(" Continue.")];
      const turn = await ask(engine, scope, followUp);
      expect(turn.cached).toBe(prompt.length + tokens.length - 1);
      expect(turn.tokens).toEqual(await reference(followUp));
    } finally {
      restore();
    }
  }, 60_000);

  it("deleting an agent the moment its answer arrives forgets it for good", async () => {
    const cacheDir = scratchDir();
    const { engine, memory } = engineWith({ cacheDir });
    const prompt = [...text("A preamble of its own. "), ...system(), ...text(" User: hi.")];
    await ask(engine, { agentId: "brief", tenant: "t1" }, prompt);
    // No wait: the answer's last token is still being written when the deletion comes.
    expect(await memory.delete("t1", "brief")).toBe(true);
    await engine.settled();
    await memory.flush();
    expect(memory.get("t1", "brief")).toBeNull();
    expect(existsSync(join(cacheDir, AgentStore.fileName("t1", "brief")))).toBe(false);
    const again = await ask(engine, { agentId: "brief", tenant: "t1" }, prompt);
    // Its full blocks may still be found by content (shared blocks), never the agent's own cache.
    expect(again.cached).toBeLessThanOrEqual(Math.floor((prompt.length - 1) / 16) * 16);
  }, 60_000);
});
