import * as fs from "node:fs/promises";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ensureCheckpointFolder, writeCheckpointFile } from "./checkpointer.ts";

// chmod as a process that does not own the folder sees it: the root of a volume Kubernetes made
// group-writable with fsGroup (root:1000, 2775) lets uid 1000 write but not chmod. Tests run as
// root, which may chmod anything, so the refusal is injected at the call.
vi.mock("node:fs/promises", async (importOriginal) => {
  const real = await importOriginal<typeof import("node:fs/promises")>();
  return { ...real, chmod: vi.fn(real.chmod) };
});

const eperm = () => Object.assign(new Error("EPERM: operation not permitted, chmod"), { code: "EPERM" });

describe("a checkpoint folder this process may write but not chmod (a volume's root)", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "cp-fsgroup-"));
  });
  afterEach(async () => {
    vi.mocked(fs.chmod).mockReset();
    await rm(dir, { recursive: true, force: true });
  });

  it("is accepted at start and takes notes", async () => {
    vi.mocked(fs.chmod).mockImplementation(async (path, mode) => {
      if (path === dir) throw eperm();
      const real = await vi.importActual<typeof import("node:fs/promises")>("node:fs/promises");
      return real.chmod(path, mode);
    });
    await expect(ensureCheckpointFolder(dir)).resolves.toBeUndefined();
    const cp = { treeSize: 1, rootHash: "r", note: "note\n", createdAt: new Date(0) };
    expect(await writeCheckpointFile(dir, cp)).toBe(join(dir, "1.note"));
    expect(await readFile(join(dir, "1.note"), "utf8")).toBe("note\n");
  });

  it("is still refused when chmod fails for another reason", async () => {
    vi.mocked(fs.chmod).mockRejectedValue(Object.assign(new Error("EIO"), { code: "EIO" }));
    await expect(ensureCheckpointFolder(dir)).rejects.toThrow(/cannot be written \(EIO\)/);
  });
});
