// src/*.d.ts are generated from the JSDoc (`npm run types`); this is `npm run check-types`
// inside the test run, so a JSDoc change without regenerated declarations fails here.
import assert from 'node:assert/strict';
import test from 'node:test';
import { differences } from '../scripts/types.mjs';

test('committed .d.ts files are what the JSDoc generates (npm run types)', () => {
  assert.deepEqual(differences(), [], 'run `npm run types` in client_js and commit the result');
});
