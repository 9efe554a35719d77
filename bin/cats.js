#!/usr/bin/env node
// Entry point for `cats`: the compiled CLI lives in dist/ (npm run build).
import "../dist/src/cli/main.js";
