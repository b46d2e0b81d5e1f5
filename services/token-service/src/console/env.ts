import type { AppEnv } from "../context.ts";
import type { ApiClient } from "./api.ts";
import type { Viewer } from "./layout.tsx";
import type { ConsoleSession, ConsoleSessions } from "./sessions.ts";

/** What console handlers find on the context once the session middleware let them through. */
export interface ConsoleEnv {
  Variables: AppEnv["Variables"] & {
    viewer: Viewer;
    session: ConsoleSession;
    sessions: ConsoleSessions;
    /** The API as the signed-in person. */
    api: ApiClient;
    /** The POST body, parsed once (and CSRF-checked) by the session middleware. */
    form: Record<string, string | File | (string | File)[]>;
  };
}
