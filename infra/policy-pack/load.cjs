// Pulumi's policy pack runner require()s this directory. The pack is
// TypeScript in the repository's ESM, so it is loaded with tsx, as
// bin/baton.js loads baton (through tsx's ESM entry: its CommonJS one
// resolves its loader from the wrong directory); the runner awaits the
// exported promise.
module.exports = import('tsx/esm/api').then(({ register }) => {
  register();
  return import('./index.ts');
});
