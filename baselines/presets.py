"""The ``demo`` preset every built-in method carries: the settings ``unlearnbench demo`` runs it with.

A method's defaults stay its paper's (e.g. NPO: lr 1e-4, 5 epochs, LoRA r 32). Those are sized for a
7B model and hours on a GPU; on the embedded world's 1M-parameter target they run minutes and
forget nothing. The demo instead gives every method the same short recipe (:data:`DEMO_TRAINING`)
and the learning rate that works best for *it*, picked by one rule for all:

* every method is trained with the recipe at each learning rate of :data:`DEMO_LR_GRID`;
* its preset takes the learning rate whose run scores best on the ``world`` board (final score =
  mean of task aggregate, MIA score, utility) among the runs that keep utility above the board's
  floor (75 % of the target's); the numbers are in each preset's comment and are re-measured by
  ``benchmarks/demo_presets.py``.

``zjuklab_merge`` follows the same rule for its parents' shared learning rate; what makes one parent
over- and the other under-forget is the ZJUKLAB paper's own recipe (loss weights 0.4/0.4/0.2 against
0.3/0.3/0.4, and the over-forgetting parent with half the batch size, hence twice the steps).

Recipe choices and why:

* LoRA r 8 / alpha 16 on every linear layer, 2 epochs, batch 8, sequences cut at 128 tokens (3 of
  the world's 600 records are 130-135 tokens long and lose their last few): minutes on two CPU cores.
* ``mask_prompt=False``: the whole record (prompt and answer) is unlearned. The world's MIA members
  are the forget documents in full, and LUME's forget prompts are the first half of those documents;
  with the prompt masked no method ever moves the member documents' loss far enough for the MIA
  AUC to leave 1.0 without destroying the model (measured: every floor-passing run stayed at AUC
  >= 0.99).
* ``eval_every=0``: no training-curve evaluation (``unlearnbench analyze curves`` needs it; set
  ``--set eval_every=epoch`` to get one).
"""

from __future__ import annotations

from typing import Any

#: The learning rates every method's demo preset was chosen from.
DEMO_LR_GRID = (5e-4, 1e-3, 2e-3, 3e-3, 5e-3)

#: The training recipe every ``demo`` preset shares (learning rate aside).
DEMO_TRAINING: dict[str, Any] = {
    "finetune": "lora", "lora_r": 8, "lora_alpha": 16, "epochs": 2, "per_device_batch_size": 8,
    "gradient_accumulation_steps": 1, "max_length": 128, "padding": "longest", "mask_prompt": False,
    "eval_every": 0,
}


def demo_preset(learning_rate: float, **params: Any) -> dict[str, Any]:
    """The shared recipe with this method's learning rate and any method-specific settings."""
    return {**DEMO_TRAINING, "learning_rate": learning_rate, **params}
