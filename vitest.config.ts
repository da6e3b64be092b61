import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts", "conformance/**/*.test.ts"],
    globalSetup: ["test/support/build.ts"],
    reporters: ["default", "./test/support/summary-reporter.ts"],
    // Tests spawn real processes and servers; two cores, so keep the pool small and timeouts honest.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: "forks",
  },
});
