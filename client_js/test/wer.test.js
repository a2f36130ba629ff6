import assert from 'node:assert/strict';
import test from 'node:test';
import { normalizeText, wordErrorRate } from './_helpers/wer.js';

test('normalization ignores case, punctuation and spacing', () => {
  assert.equal(normalizeText('  And so, my fellow Americans: ASK not!'), 'and so my fellow americans ask not');
  assert.equal(normalizeText("Don't — stop"), 'dont stop');
  assert.equal(wordErrorRate('Hello, world.', 'hello world'), 0);
});

test('substitutions, insertions and deletions count against the reference length', () => {
  assert.equal(wordErrorRate('a b c d', 'a x c d'), 0.25);
  assert.equal(wordErrorRate('a b c d', 'a b c d e'), 0.25);
  assert.equal(wordErrorRate('a b c d', 'a c'), 0.5);
  assert.equal(wordErrorRate('', ''), 0);
  assert.equal(wordErrorRate('a', ''), 1);
});
