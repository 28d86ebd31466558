"""The machinery below the course files: what config.py, tokenizer.py, dataset.py, model.py, train.py,
inference.py and chatbot.py use, and which imports none of them.

    errors        UserError, the one-line errors every script prints
    files         folders checked before a run, atomic writes, weights-only reads
    data_sources  where question-answer text comes from (Hub name, local file or folder, built-in)
    corpus        the built-in generated question-answer corpus
    runtime       device, precision (from what the hardware has), processes, compilation
    training_log  the CSV log of a run and its loss curve
    checkpoint    the checkpoint format: TrainingState saved and resumed, model.json beside model.pth
    fused_loss    the optional fast training loss (output layer and cross-entropy together)
    compat        loading checkpoints of other layouts (torch.compile, DDP, the course reference)
    probes        checks of any model instance: parameter count, untrained loss, no future leak,
                  padding has no effect, attention weights
"""
