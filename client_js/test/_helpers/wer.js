// Word error rate on normalized text: lowercase, punctuation removed,
// whitespace collapsed (as /work/shared/speech/README.md asks for).

export function normalizeText(text) {
  return text
    .toLowerCase()
    .normalize('NFKC')
    .replace(/['’]/g, '') // don't → dont, on both sides
    .replace(/[^\p{L}\p{N}]+/gu, ' ')
    .trim();
}

/** Word-level edit distance / reference length. */
export function wordErrorRate(reference, hypothesis) {
  const ref = normalizeText(reference).split(' ').filter(Boolean);
  const hyp = normalizeText(hypothesis).split(' ').filter(Boolean);
  if (ref.length === 0) return hyp.length ? 1 : 0;
  let prev = Array.from({ length: hyp.length + 1 }, (_, j) => j);
  for (let i = 1; i <= ref.length; i++) {
    const cur = [i];
    for (let j = 1; j <= hyp.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ref[i - 1] === hyp[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[hyp.length] / ref.length;
}
