import { writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, describeConfig, loadConfig } from "../../src/config/load.js";
import { SETTINGS, SETTING_KEYS } from "../../src/config/settings.js";
import { scratchDir } from "../support/cli.js";

function dirWithDotenv(contents: string): string {
  const dir = scratchDir();
  writeFileSync(join(dir, ".env"), contents);
  return dir;
}

describe("configuration", () => {
  it("gives every setting its documented default when nothing is set", () => {
    const { config, origins } = loadConfig({ env: {}, cwd: scratchDir() });
    expect(config.serverHost).toBe("0.0.0.0");
    expect(config.serverPort).toBe(8000);
    expect(config.serverLogLevel).toBe("INFO");
    expect(config.mlxModelId).toBe("mlx-community/gemma-3-12b-it-4bit");
    expect(config.agentCacheDir).toBe(join(homedir(), ".agent_memory/caches"));
    expect(config.mlxKvBits).toBeNull();
    expect(config.apiKeys).toEqual([]);
    expect(config.adminKey).toBeNull();
    for (const key of SETTING_KEYS) expect(origins[key].source).toBe("default");
  });

  it("takes flag over environment over .env over default, and records where each came from", () => {
    const cwd = dirWithDotenv(
      "SEMANTIC_SERVER_PORT=7001\nSEMANTIC_SERVER_HOST=10.0.0.1\nSEMANTIC_MLX_MAX_BATCH_SIZE=3\n# comment\n",
    );
    const loaded = loadConfig({
      flags: { serverPort: "7003" },
      env: { SEMANTIC_SERVER_PORT: "7002", SEMANTIC_SERVER_HOST: "127.0.0.2" },
      cwd,
    });
    expect(loaded.config.serverPort).toBe(7003);
    expect(loaded.origins.serverPort.source).toBe("flag");
    expect(loaded.config.serverHost).toBe("127.0.0.2");
    expect(loaded.origins.serverHost.source).toBe("environment");
    expect(loaded.config.mlxMaxBatchSize).toBe(3);
    expect(loaded.origins.mlxMaxBatchSize.source).toBe(".env");
    expect(loaded.dotenvPath).toBe(join(cwd, ".env"));
    expect(loaded.config.serverLogLevel).toBe("INFO");
  });

  it("expands ~ in the cache directory and parses lists, booleans, case-insensitive words and KV bits", () => {
    const { config } = loadConfig({
      env: {
        SEMANTIC_AGENT_CACHE_DIR: "~/caches-here",
        SEMANTIC_API_KEY: " k1, k2 ,,",
        SEMANTIC_SERVER_CORS_ORIGINS: "http://a.test,http://b.test",
        SEMANTIC_AGENT_EVICT_TO_DISK: "no",
        SEMANTIC_AGENT_LRU_EVICTION_ENABLED: "1",
        SEMANTIC_SERVER_LOG_LEVEL: "debug",
        SEMANTIC_BACKEND: "WebGPU",
        SEMANTIC_MLX_KV_BITS: "4",
        SEMANTIC_MLX_KV_GROUP_SIZE: "32",
        SEMANTIC_MLX_DEFAULT_TEMPERATURE: "0.25",
      },
      cwd: scratchDir(),
    });
    expect(config.agentCacheDir).toBe(join(homedir(), "caches-here"));
    expect(config.apiKeys).toEqual(["k1", "k2"]);
    expect(config.serverCorsOrigins).toEqual(["http://a.test", "http://b.test"]);
    expect(config.agentEvictToDisk).toBe(false);
    expect(config.agentLruEvictionEnabled).toBe(true);
    expect(config.serverLogLevel).toBe("DEBUG");
    expect(config.backend).toBe("webgpu");
    expect(config.mlxKvBits).toBe(4);
    expect(config.mlxKvGroupSize).toBe(32);
    expect(config.mlxDefaultTemperature).toBe(0.25);
  });

  it.each([
    ["SEMANTIC_SERVER_PORT", "abc", "an integer from 0 to 65535"],
    ["SEMANTIC_SERVER_PORT", "70000", "an integer from 0 to 65535"],
    ["SEMANTIC_MLX_KV_BITS", "5", "4, 8 or none"],
    ["SEMANTIC_SERVER_LOG_LEVEL", "LOUD", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"],
    ["SEMANTIC_AGENT_EVICT_TO_DISK", "maybe", "true or false"],
    ["SEMANTIC_MLX_DEFAULT_TEMPERATURE", "3", "a number from 0 to 2"],
    ["SEMANTIC_MLX_KV_GROUP_SIZE", "48", "one of 32, 64, 128"],
  ])("rejects %s=%s naming the variable, the value and what is allowed", (name, value, allowed) => {
    const attempt = () => loadConfig({ env: { [name]: value }, cwd: scratchDir() });
    expect(attempt).toThrow(ConfigError);
    const message = (() => {
      try {
        attempt();
      } catch (error) {
        return (error as Error).message;
      }
      return "";
    })();
    expect(message).toContain(name);
    expect(message).toContain(JSON.stringify(value));
    expect(message).toContain(allowed);
    expect(message).toContain("from the environment");
    expect(message).not.toContain("\n");
  });

  it("names the flag and the .env file when the bad value came from there", () => {
    expect(() => loadConfig({ flags: { serverPort: "x" }, env: {}, cwd: scratchDir() })).toThrow(
      /--port \(from the command line\) = "x"/,
    );
    const cwd = dirWithDotenv("SEMANTIC_MLX_MAX_BATCH_SIZE=0\n");
    expect(() => loadConfig({ env: {}, cwd })).toThrow(
      new RegExp(`SEMANTIC_MLX_MAX_BATCH_SIZE \\(from ${join(cwd, ".env").replaceAll("/", "\\/")}\\) = "0"`),
    );
  });

  it("reports every bad value at once, on one line", () => {
    try {
      loadConfig({ env: { SEMANTIC_SERVER_PORT: "abc", SEMANTIC_MLX_KV_BITS: "5" }, cwd: scratchDir() });
      expect.unreachable("loadConfig accepted two bad values");
    } catch (error) {
      expect((error as Error).message).toMatch(/SEMANTIC_SERVER_PORT.*; SEMANTIC_MLX_KV_BITS/);
    }
  });

  it("never shows a secret's value, even in an error", () => {
    const loaded = loadConfig({
      env: { SEMANTIC_API_KEY: "sk-one,sk-two", SEMANTIC_ADMIN_KEY: "adm" },
      cwd: scratchDir(),
    });
    const printed = JSON.stringify(describeConfig(loaded));
    expect(printed).not.toContain("sk-one");
    expect(printed).not.toContain('adm"');
    expect(describeConfig(loaded).SEMANTIC_API_KEY).toEqual({ value: ["********", "********"], source: "environment" });
    expect(describeConfig(loaded).SEMANTIC_ADMIN_KEY).toEqual({ value: "********", source: "environment" });
  });

  it("warns about unknown SEMANTIC_* variables and suggests the setting that was meant", () => {
    const cwd = dirWithDotenv("SEMANTIC_MLX_KVBITS=4\n");
    const { warnings } = loadConfig({ env: { SEMANTIC_SERVR_PORT: "1", OTHER_VAR: "x" }, cwd });
    expect(warnings).toEqual([
      "unknown setting SEMANTIC_SERVR_PORT in the environment (did you mean SEMANTIC_SERVER_PORT?); it is ignored",
      `unknown setting SEMANTIC_MLX_KVBITS in ${join(cwd, ".env")} (did you mean SEMANTIC_MLX_KV_BITS?); it is ignored`,
    ]);
  });

  it("documents every setting: a description, an allowed-values sentence and a parseable default", () => {
    for (const key of SETTING_KEYS) {
      const spec = SETTINGS[key];
      expect(spec.env).toMatch(/^SEMANTIC_[A-Z_]+$/);
      expect(spec.description.length).toBeGreaterThan(10);
      expect(spec.value.allowed.length).toBeGreaterThan(3);
      expect(spec.value.schema.safeParse(spec.default).success).toBe(true);
    }
  });
});
