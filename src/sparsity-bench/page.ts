import type { LevelSamples } from "./run.js";

/** What the browser page hands to the host script that drives it (bench/chrome.ts). */
export interface PageResult {
  samples: LevelSamples[];
  weightBytes: number[];
  adapter: string;
  kernels: string;
  modelName: string;
  synthetic: boolean;
  promptTokens: number;
  userAgent: string;
}

declare global {
  interface Window {
    catsResult?: PageResult;
    catsError?: string;
    catsPhase?: (phase: "start" | "end") => Promise<void>;
  }
}
