// CI stand-in for .sst/platform/config.d.ts (which `sst install` generates):
// the two globals sst.config.ts uses, with the shapes SST v3 gives them.
// Not used when the real file exists (tsconfig.json includes that one).

interface SstAppInput {
  stage: string;
}

interface SstApp {
  name: string;
  home: "aws" | "cloudflare" | "local";
  removal?: "remove" | "retain" | "retain-all";
  providers?: Record<string, unknown>;
}

interface SstConfig {
  app(input: SstAppInput): SstApp;
  run(): Promise<Record<string, unknown> | void>;
}

declare function $config(config: SstConfig): SstConfig;

declare const $app: { name: string; stage: string };
