"""Evaluation of exports: the IQ suite (generated locally) and lm-evaluation-harness tasks.

    tasks    the IQ suite's generators (seeded, versioned), chance levels
    config   EvalConfig: the `eval:` section of a plan and the `raygrow eval` options
    score    exact match of greedy generation and gold log-likelihood on a Hugging Face export
    harness  lm-eval: exports through its HFLM, the IQ suite written as lm-eval tasks
    run      evaluate one export with an EvalConfig (what the CLI and the run's Ray tasks call)
    cli      `raygrow eval`

This file imports nothing, so `raygrow.config.run` can take `EvalConfig` from `config` without
loading torch.
"""
