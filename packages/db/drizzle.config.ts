import { defineConfig } from "drizzle-kit";

// Migrations are generated from the schema and committed; never `push` to a shared database.
export default defineConfig({
  dialect: "postgresql",
  schema: "./src/schema/index.ts",
  out: "./drizzle",
  strict: true,
});
