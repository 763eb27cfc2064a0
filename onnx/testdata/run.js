// Runs ONNX models in ONNX Runtime (the npm package onnxruntime-node) for
// Kiln's export tests, all in one process so the runtime loads once.
//
//   node run.js manifest.json results.json
//
// manifest.json: {"cases": [{"name", "model" (a file), "input", "output"
// (value names), "inputs": [{"dims": [...], "data": [...]}]}]}
// results.json: {"version", "results": [{"name", "outputs": [{"dims",
// "data"}]} or {"name", "error"}]}: a case that fails is reported, and the
// others still run.
'use strict';
const fs = require('fs');
const ort = require('onnxruntime-node');

async function runCase(c) {
  const session = await ort.InferenceSession.create(c.model, { executionProviders: ['cpu'] });
  const outputs = [];
  for (const input of c.inputs) {
    const x = new ort.Tensor('float32', Float32Array.from(input.data), input.dims);
    const r = await session.run({ [c.input]: x });
    const y = r[c.output];
    if (!y) {
      throw new Error(`no output ${c.output} (have ${session.outputNames.join(', ')})`);
    }
    outputs.push({ dims: Array.from(y.dims), data: Array.from(y.data) });
  }
  return { name: c.name, inputNames: session.inputNames, outputNames: session.outputNames, outputs };
}

async function main() {
  const [manifestPath, resultsPath] = process.argv.slice(2);
  const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
  const results = [];
  for (const c of manifest.cases) {
    try {
      results.push(await runCase(c));
    } catch (e) {
      results.push({ name: c.name, error: String((e && e.message) || e) });
    }
  }
  const version = require('onnxruntime-node/package.json').version;
  fs.writeFileSync(resultsPath, JSON.stringify({ version, results }));
}

main().catch((e) => {
  console.error((e && e.stack) || e);
  process.exit(1);
});
