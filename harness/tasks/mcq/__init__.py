"""Multiple-choice sets (MMLU and the synthetic world's utility set) scored with lm-evaluation-harness."""
