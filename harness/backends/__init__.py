"""Model access: loading models, the batched HF engine, the organisers' reference loop, vLLM, and
data parallelism."""
