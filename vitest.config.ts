import { defineConfig } from "vitest/config";

const project = (name: string, dir: string, extra: Record<string, unknown> = {}) => ({
  // Inherit the root options (timeouts, reporters): inline projects do not by default.
  extends: true as const,
  test: {
    name,
    root: dir,
    include: ["src/**/*.test.ts", "*.test.ts", "**/*.test.ts"],
    exclude: ["**/node_modules/**", "**/dist/**"],
    ...extra,
  },
});

export default defineConfig({
  test: {
    // Integration suites create their own databases and key prefixes, so files may run in parallel.
    testTimeout: 30_000,
    reporters: ["default", "./scripts/summary-reporter.ts"],
    hookTimeout: 60_000,
    projects: [
      project("core", "packages/core"),
      project("policy", "packages/policy"),
      project("tokens", "packages/tokens"),
      project("db", "packages/db"),
      project("state", "packages/state"),
      project("audit", "packages/audit"),
      project("testkit", "packages/testkit"),
      project("ui", "packages/ui"),
      project("phonebank", "services/phonebank"),
      project("token-service", "services/token-service"),
      project("gateway", "services/gateway"),
      project("stack", "services/stack"),
      project("e2e", "test"),
    ],
  },
});
