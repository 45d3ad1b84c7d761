"""Sub-commands of the ``unlearnbench`` CLI, one module each (see ``harness.cli``)."""
