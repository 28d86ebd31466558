"""Loading checkpoints of other layouts of the same model (TransformerModel registers these hooks).

- `_orig_mod.` and `module.`, added to every key by torch.compile (the template's train.py saves the
  compiled model) and by DistributedDataParallel, are dropped;
- a top-level `positional_encoding` (the course's reference solution keeps the table in the model
  itself, not in a PositionalEncoding module) becomes `pos_encoder.positional_encoding`, so the
  table the model was trained with is the one loaded; a table saved as (1, max_len, d) is reshaped.
"""

WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # torch.compile, DistributedDataParallel


def unwrap_key(key):
    """A state_dict key without the prefixes torch.compile and DDP add.

    >>> unwrap_key("module._orig_mod.fc_out.weight")
    'fc_out.weight'
    """
    while key.startswith(WRAPPER_PREFIXES):
        key = key.split(".", 1)[1]
    return key


def standardize_keys(state_dict, prefix=""):
    """Rename, in place, the keys of other layouts of this same model to model.py's names.

    >>> standardize_keys({"_orig_mod.positional_encoding": 0, "fc_out.bias": 1})
    {'fc_out.bias': 1, 'pos_encoder.positional_encoding': 0}
    """
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = unwrap_key(key[len(prefix):])
        if rest == "positional_encoding":
            rest = "pos_encoder.positional_encoding"
        if prefix + rest != key:
            state_dict[prefix + rest] = state_dict.pop(key)
    return state_dict


def standardize_keys_hook(module, state_dict, prefix, *args):
    """load_state_dict pre-hook of TransformerModel: template, compiled, DDP and reference
    checkpoints load directly."""
    standardize_keys(state_dict, prefix)


def reshape_positional_encoding_hook(module, state_dict, prefix, *args):
    """load_state_dict pre-hook of PositionalEncoding: the table in (max_len, d) or (1, max_len, d)."""
    key = prefix + "positional_encoding"
    ours = module.positional_encoding
    if key in state_dict and state_dict[key].shape != ours.shape and state_dict[key].numel() == ours.numel():
        state_dict[key] = state_dict[key].reshape(ours.shape)
