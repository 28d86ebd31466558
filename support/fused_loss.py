"""Optional fast path of training: the output layer and the cross-entropy computed together.

The plain loss (train.loss_sum_and_count without `output_layer`, --fused_loss off) is the template's:

    logits = model(source, padding_mask)                                # (B, T, vocab)
    loss = F.cross_entropy(logits.reshape(-1, vocab), target.reshape(-1), ignore_index=-100)

On a CPU in fp32 most of a small model's step goes into that (B, T, vocab) tensor: fc_out over
every position, padding included, a log-softmax of the same size, and a zero-filled gradient
buffer. Here only real target positions go through fc_out, chunk by chunk, and the gradients
are computed in the forward pass. Loss and every gradient equal the plain code's (in bf16 up
to bf16 rounding; tests/test_train.py).

train.py uses it (--fused_loss auto) in fp32 and under bf16 autocast, where the matmuls run in bf16 as autocast
would run fc_out and the softmax stays in fp32, as after the plain code's logits.float(). Under
fp16 with a gradient scaler (a T4) train.py runs the plain code: the gradients here are computed
before the scale is known, so small ones would underflow in fp16.
"""

import torch
import torch.nn as nn

IGNORE_INDEX = -100  # CrossEntropyLoss's default ignore_index, as dataset.py's targets use


class HiddenStates(nn.Module):
    """`model` without its output layer: forward returns model.hidden_states(...), (B, T, C).

    A module rather than the bound method, so that DistributedDataParallel and torch.compile,
    which wrap a module's forward, can wrap it. It owns no parameters of its own.
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, padding_mask=None):
        return self.model.hidden_states(x, padding_mask)  # (B, T, C)


class _LinearCrossEntropy(torch.autograd.Function):
    """sum_i CE(hidden_i @ W.T + b, target_i), with the gradients computed chunk by chunk.

    Never materialises the (N, vocab) logits, their log-softmax or the zero-filled gradient
    buffer that F.cross_entropy's backward needs; per chunk: logits -> log-softmax -> softmax in
    place -> minus one-hot = dloss/dlogits -> gradients of hidden, W and b. The three matmuls
    run in `dtype` (fp32, or bf16 as under autocast); the softmax and the sums of the weight and
    bias gradients in fp32; the gradient of `hidden` comes back in hidden's dtype.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, target, chunk_rows, dtype):
        w, b = weight.to(dtype), bias.to(dtype)  # (V, C), (V,): no copy in fp32
        grad_hidden = torch.empty_like(hidden)  # (N, C)
        grad_weight = torch.zeros_like(weight)  # (V, C), fp32 like the parameter
        grad_bias = torch.zeros_like(bias)  # (V,)
        loss = hidden.new_zeros((), dtype=torch.float32)
        for start in range(0, hidden.size(0), chunk_rows):
            h, t = hidden[start:start + chunk_rows].to(dtype), target[start:start + chunk_rows, None]
            logits = torch.addmm(b, h, w.t())  # (n, V)
            log_probs = torch.log_softmax(logits, dim=1, dtype=torch.float32)  # (n, V)
            loss -= log_probs.gather(1, t).sum()
            probs = log_probs.exp_()  # softmax, in place
            probs.scatter_add_(1, t, torch.full_like(t, -1, dtype=probs.dtype))  # minus one-hot
            dlogits = probs.to(dtype)  # (n, V)
            grad_hidden[start:start + chunk_rows] = torch.mm(dlogits, w)
            grad_weight += torch.mm(dlogits.t(), h)
            grad_bias += probs.sum(0)
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        return loss

    @staticmethod
    def backward(ctx, grad_loss):
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        return grad_hidden * grad_loss, grad_weight * grad_loss, grad_bias * grad_loss, None, None, None


def linear_cross_entropy(hidden, linear, target, chunk_rows=2048, dtype=torch.float32):
    """Summed cross-entropy of `linear(hidden)` against `target`, skipping ignored positions.

    hidden (B, T, C), target (B, T). Equal to
    F.cross_entropy(linear(hidden).reshape(-1, V), target.reshape(-1), reduction="sum")
    (tests check the loss and all gradients), but faster on a CPU: only real target positions
    go through the output layer, and no (B*T, V) log-softmax or gradient buffer is allocated.
    With dtype=torch.bfloat16 it equals that code under torch.autocast(dtype=torch.bfloat16)
    with the logits taken .float() before the loss, within bf16 rounding.
    """
    keep = target.reshape(-1) != IGNORE_INDEX
    rows = hidden.reshape(-1, hidden.size(-1))[keep]  # (N, C)
    return _LinearCrossEntropy.apply(rows, linear.weight, linear.bias, target.reshape(-1)[keep],
                                     chunk_rows, dtype)
