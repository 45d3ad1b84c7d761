"""The harness's contracts: value types, registries, result records, atomic file I/O, the evaluation
cache, the prompt/answer seam and the library's errors. No torch import anywhere in this package,
so ``metrics`` and ``leaderboards`` can depend on it without loading a model stack."""
