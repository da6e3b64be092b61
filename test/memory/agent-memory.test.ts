/**
 * Agent KV memory with the real engine on a real fixture model (WebGPU): exact reuse counts across
 * turns, and greedy output and K/V that never depend on where the K/V came from — reused, trimmed
 * after a divergence, shared between agents, reloaded from disk, or after a restart (8-bit storage:
 * see kv-quantization.test.ts). The K/V is compared with an uncached run's, block by block: the tiny
 * model's output alone would not show a block out of place.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { SafetensorsFile } from "../../src/model/safetensors.js";
import { AgentStore } from "../../src/memory/persistence.js";
import { scratchDir } from "../support/cli.js";
import { useMemoryFixture, type Turn } from "../support/memory-fixture.js";

describe("agent KV memory", () => {
  const { engineWith, blockBytes, ask, reference, fileKv, heldKv, expectKvOfUncachedRun, text, system } =
    useMemoryFixture();

  it("reuses exactly the cached tokens turn after turn, generated tokens included, with unchanged output", async () => {
    const cacheDir = scratchDir();
    const { engine, memory } = engineWith({ cacheDir });
    const scope = { agentId: "agent-a", tenant: "t1" };
    const turn1Prompt = [...system(), ...text(" User: list the files.")];
    const turn1 = await ask(engine, scope, turn1Prompt);
    expect(turn1.cached).toBe(0);
    expect(turn1.tokens).toEqual(await reference(turn1Prompt));

    // The next turn resends everything, the model's answer included, and adds a little.
    const turn2Prompt = [...turn1Prompt, ...turn1.tokens, ...text(" User: now run the tests.")];
    const turn2 = await ask(engine, scope, turn2Prompt);
    // Every token has its K/V cached, the last generated one too: it was fed back once the answer was
    // out, and this turn, sent the moment that answer arrived, waited for it.
    expect(turn2.cached).toBe(turn1Prompt.length + turn1.tokens.length);
    expect(turn2.tokens).toEqual(await reference(turn2Prompt));

    const turn3Prompt = [...turn2Prompt, ...turn2.tokens, ...text(" User: thanks.")];
    const turn3 = await ask(engine, scope, turn3Prompt);
    expect(turn3.cached).toBe(turn2Prompt.length + turn2.tokens.length);
    expect(turn3.tokens).toEqual(await reference(turn3Prompt));
    await expectKvOfUncachedRun(await heldKv(memory, cacheDir, "t1", "agent-a"), turn3Prompt);
  }, 60_000);

  it("on divergence keeps only the common prefix, and the output is still the uncached one", async () => {
    const cacheDir = scratchDir();
    const { engine, memory } = engineWith({ cacheDir });
    const scope = { agentId: "agent-b", tenant: "t1" };
    const first = [...system(), ...text(" User: describe the repository layout in detail.")];
    await ask(engine, scope, first);
    const edited = [...system(), ...text(" User: describe the test layout instead.")];
    let common = 0;
    while (first[common] === edited[common]) common++;
    const turn = await ask(engine, scope, edited);
    expect(turn.cached).toBe(common);
    expect(turn.tokens).toEqual(await reference(edited));
    await expectKvOfUncachedRun(await heldKv(memory, cacheDir, "t1", "agent-b"), edited);
  }, 60_000);

  it("shares full blocks of a common prefix between agents of one tenant, never across tenants", async () => {
    const cacheDir = scratchDir();
    const { engine, memory } = engineWith({ cacheDir });
    const prompt = (question: string) => [...system(), ...text(question)];
    await ask(engine, { agentId: "first", tenant: "t1" }, prompt(" User: hello."));
    // Sent the moment the first answer arrives: the first agent's blocks are named once its settle row
    // has run, and the lookup waits for it.
    const second = await ask(engine, { agentId: "second", tenant: "t1" }, prompt(" User: something else."));
    const sharedBlocks = Math.floor(Math.min(system().length, prompt(" User: something else.").length - 1) / 16);
    expect(second.cached).toBe(sharedBlocks * 16);
    expect(second.tokens).toEqual(await reference(prompt(" User: something else.")));
    await expectKvOfUncachedRun(await heldKv(memory, cacheDir, "t1", "second"), prompt(" User: something else."));
    // The agent that wrote the shared blocks first still holds its own K/V: the second agent's writes
    // went to blocks of its own.
    await expectKvOfUncachedRun(await heldKv(memory, cacheDir, "t1", "first"), prompt(" User: hello."));
    const otherTenant = await ask(engine, { agentId: "third", tenant: "t2" }, prompt(" User: something else."));
    expect(otherTenant.cached).toBe(0);
    // Requests that name no agent reuse shared blocks too.
    const anonymous = await ask(engine, { agentId: null, tenant: "t1" }, prompt(" User: a third thing."));
    expect(anonymous.cached).toBe(sharedBlocks * 16);
  }, 60_000);

  it("evicts idle agents to disk under a small budget and reloads them with unchanged output", async () => {
    const cacheDir = scratchDir();
    // Room for about two agents' caches: the third pushes the least recently used out. Evictions read
    // the blocks back two at a time (as a large agent is, 256 MiB at a time), the last batch short.
    const { engine, memory } = engineWith({
      cacheDir,
      kvBudgetBytes: 10 * blockBytes(),
      snapshotBatchBytes: 2 * blockBytes(),
    });
    const prompts = ["one", "two", "three"].map((name) => [...text(`Agent ${name} speaks. `), ...system()]);
    const firstTurns = [];
    for (const [index, prompt] of prompts.entries()) {
      firstTurns.push(await ask(engine, { agentId: `agent-${index}`, tenant: "t1" }, prompt));
    }
    await memory.flush();
    const stats = memory.stats();
    expect(stats.hotAgents).toBe(2);
    expect(stats.hotBytes).toBeLessThanOrEqual(engine.kvBytes);
    expect(engine.kvBytes).toBeLessThanOrEqual(10 * blockBytes());
    expect(memory.get("t1", "agent-0")?.tier).toBe("warm");

    const followUp = [...prompts[0]!, ...firstTurns[0]!.tokens, ...text(" Continue.")];
    const reloaded = await ask(engine, { agentId: "agent-0", tenant: "t1" }, followUp);
    expect(reloaded.cached).toBe(prompts[0]!.length + firstTurns[0]!.tokens.length);
    expect(reloaded.tokens).toEqual(await reference(followUp));
    const afterReload = memory.stats();
    expect(afterReload.hits.warm).toBe(1);
    // The reload's time is taken apart: opening the file, waiting for reads, importing; the three
    // parts are measured separately and cannot add up to more than the whole.
    expect(afterReload.reloads).toBe(1);
    const { reloadMs, reloadOpenMs, reloadReadWaitMs, reloadImportMs } = afterReload;
    for (const part of [reloadOpenMs, reloadReadWaitMs, reloadImportMs]) expect(part).toBeGreaterThan(0);
    expect(reloadOpenMs + reloadReadWaitMs + reloadImportMs).toBeLessThanOrEqual(reloadMs);
    await expectKvOfUncachedRun(await heldKv(memory, cacheDir, "t1", "agent-0"), followUp);

    // A restart: a new engine and memory over the same directory find every agent on disk.
    await memory.flush();
    const restarted = engineWith({ cacheDir });
    await restarted.memory.start();
    expect(
      restarted.memory
        .list("t1")
        .map((agent) => agent.agentId)
        .sort(),
    ).toEqual(["agent-0", "agent-1", "agent-2"]);
    const followUp2 = [...prompts[2]!, ...firstTurns[2]!.tokens, ...text(" Continue.")];
    const afterRestart = await ask(restarted.engine, { agentId: "agent-2", tenant: "t1" }, followUp2);
    expect(afterRestart.cached).toBe(prompts[2]!.length + firstTurns[2]!.tokens.length);
    expect(afterRestart.tokens).toEqual(await reference(followUp2));
    await expectKvOfUncachedRun(await heldKv(restarted.memory, cacheDir, "t1", "agent-2"), followUp2);
  }, 60_000);

  it("an agent read back in several batches is written exactly as one read back at once", async () => {
    // The tiny fixture model's greedy output barely depends on which K/V it attends to, so the output
    // checks above would not notice blocks out of place: compare the files' blocks byte for byte.
    const prompt = [...text("Agent batch speaks at some length, so that it fills several blocks. "), ...system()];
    const blocksOf = async (snapshotBatchBytes: number | undefined) => {
      const cacheDir = scratchDir();
      const { engine, memory } = engineWith({ cacheDir, snapshotBatchBytes });
      await ask(engine, { agentId: "batched", tenant: "t1" }, prompt);
      expect(await memory.evictAgent("t1", "batched")).toBe(true);
      const file = await SafetensorsFile.open(join(cacheDir, AgentStore.fileName("t1", "batched")));
      try {
        const names = [...file.tensors.keys()].filter((name) => name.startsWith("block.")).sort();
        return await Promise.all(names.map(async (name) => Buffer.from(await file.read(name))));
      } finally {
        await file.close();
      }
    };
    const whole = await blocksOf(undefined);
    const batched = await blocksOf(2 * blockBytes());
    expect(whole.length).toBeGreaterThanOrEqual(5);
    expect(batched.length).toBe(whole.length);
    batched.forEach((block, i) => expect(block.equals(whole[i]!), `block ${i}`).toBe(true));
    // Different blocks, so a block out of place would show.
    expect(new Set(whole.map((block) => block.toString("base64"))).size).toBe(whole.length);
  }, 60_000);

  it("agents evicted at once, and again through reused read-back memory, are each written with their own K/V", async () => {
    const cacheDir = scratchDir();
    // Two blocks per read-back buffer: each agent takes several, and the second eviction's read-back
    // runs while the first one's file is still being written. Two buffers kept: the rest of each
    // read-back goes to memory beyond them (views into one allocation per agent).
    const { engine, memory } = engineWith({
      cacheDir,
      snapshotBatchBytes: 2 * blockBytes(),
      snapshotKeepBytes: 4 * blockBytes(),
    });
    const agents = ["first", "second", "third"].map((name, index) => ({
      id: `at-once-${index}`,
      prompt: [...text(`The ${name} agent speaks at length. `), ...system()],
    }));
    for (let round = 0; round < 2; round++) {
      // Round 0 starts the agents; round 1 reloads them and adds a turn, so they are written again
      // through the buffers round 0 gave back.
      const answers: Turn[] = [];
      for (const agent of agents) answers.push(await ask(engine, { agentId: agent.id, tenant: "t1" }, agent.prompt));
      const evicted = await Promise.all(agents.map((agent) => memory.evictAgent("t1", agent.id)));
      expect(evicted).toEqual([true, true, true]);
      await memory.flush();
      for (const agent of agents) await expectKvOfUncachedRun(await fileKv(cacheDir, "t1", agent.id), agent.prompt);
      agents.forEach(
        (agent, index) => (agent.prompt = [...agent.prompt, ...answers[index]!.tokens, ...text(" Go on.")]),
      );
    }
    expect(memory.stats().hits.warm).toBe(3);
  }, 60_000);

  it("an agent whose file rotted on disk is prefilled again, with unchanged output, and its file set aside", async () => {
    const cacheDir = scratchDir();
    const { engine, memory } = engineWith({ cacheDir });
    const scope = { agentId: "rotten", tenant: "t1" };
    const prompt = [...text("A private preamble nobody else has. "), ...system(), ...text(" User: hi.")];
    const first = await ask(engine, scope, prompt);
    expect(await memory.evictAgent("t1", "rotten")).toBe(true);
    const path = join(cacheDir, AgentStore.fileName("t1", "rotten"));
    const file = readFileSync(path);
    file[file.length - 1]! ^= 0x01; // in the last block's data
    writeFileSync(path, file);

    const followUp = [...prompt, ...first.tokens, ...text(" Continue.")];
    const turn = await ask(engine, scope, followUp);
    expect(turn.tokens).toEqual(await reference(followUp));
    expect(memory.stats()).toMatchObject({ hits: { warm: 0 }, reloads: 0 });
    expect(existsSync(path)).toBe(false);
    expect(readdirSync(join(cacheDir, "quarantine"))).toHaveLength(1);
    await expectKvOfUncachedRun(await heldKv(memory, cacheDir, "t1", "rotten"), followUp);
  }, 60_000);

  it("deleting an agent removes it from memory and disk", async () => {
    const cacheDir = scratchDir();
    const { engine, memory } = engineWith({ cacheDir });
    await ask(engine, { agentId: "gone", tenant: "t1" }, [...system(), ...text(" User: hi.")]);
    await memory.flush();
    expect(memory.get("t1", "gone")?.tier).toBe("hot");
    expect(await memory.delete("t1", "gone")).toBe(true);
    expect(memory.get("t1", "gone")).toBeNull();
    const again = await ask(engine, { agentId: "gone", tenant: "t1" }, [...system(), ...text(" User: hi.")]);
    expect(again.cached).toBe(Math.floor((system().length + text(" User: hi.").length - 1) / 16) * 16);
  }, 60_000);
});
