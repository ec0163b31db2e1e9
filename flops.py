"""What a training step costs: model FLOPs (PaLM's formula, as nanoGPT and torchtitan count them), MFU against the
device's peak, and the memory a rank needs. train.py prints and logs them; bench/bench_gpu.py and
bench/bench_train.py measure with them. torch is imported inside the one function that needs it.
"""


def train_flops(n_tokens, n_loss, n_body, n_layer, attn_dim, d_model, vocab):
    """Model FLOPs of one forward + backward pass over one sequence of n_tokens tokens (PaLM, appendix B; the
    formula of nanoGPT and torchtitan), counting only what this loop computes:
        6 * n_body * n_tokens                  every weight of the decoder blocks (and final norm) once per token:
                                               2 FLOPs per weight forward, 4 backward
      + 12 * n_layer * attn_dim * n_tokens^2   attention scores QK^T and their weighted sum AV, each 2*T*attn_dim
                                               per token per layer forward, x3 with backward (the causal half is
                                               not discounted, as in PaLM)
      + 6 * d_model * vocab * n_loss           the LM head, which runs only at the loss positions here
    The embedding lookup costs no FLOPs; pads and the trimmed tail are not computed and not counted; the
    recomputation of activation checkpointing is not counted (model FLOPs, not hardware FLOPs)."""
    return 6 * n_body * n_tokens + 12 * n_layer * attn_dim * n_tokens ** 2 + 6 * d_model * vocab * n_loss


# bf16 dense peak TFLOP/s from the vendors' spec sheets; the first name found in the device's name wins
PEAK_BF16_TFLOPS = [("A100", 312.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0)]


def peak_tflops(device_name, compute_dtype, given=None):
    """Peak dense TFLOP/s of one device for MFU: --peak-tflops if given, else the bf16 peak of a known GPU
    (first matching name in PEAK_BF16_TFLOPS) when computing in bf16, else None (no MFU printed)."""
    import torch
    if given:
        return given
    if compute_dtype != torch.bfloat16 or device_name is None:
        return None
    return next((peak for name, peak in PEAK_BF16_TFLOPS if name in device_name), None)


def mfu(flops, seconds, n_devices, peak):
    """(achieved model TFLOP/s per device, model FLOPs utilisation or None) of `flops` done in `seconds`."""
    tflops = flops / seconds / n_devices / 1e12
    return tflops, (tflops / peak if peak else None)


def model_shape(model, config):
    """The numbers train_flops needs of a Hugging Face causal LM (on any device, meta included): the decoder
    body's parameters (all but the embedding and an untied LM head), layers, attention width, width, vocabulary."""
    n_params = sum(p.numel() for p in model.parameters())
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    n_heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // n_heads
    return dict(n_body=n_params - emb.numel() - (head.numel() if head is not emb else 0),
                n_layer=config.num_hidden_layers, attn_dim=n_heads * head_dim, d_model=config.hidden_size,
                vocab=head.shape[0])


def memory_per_rank(model, config, n_devices, compute_dtype, tokens, loss_tokens, checkpointing):
    """memory_estimate for a Hugging Face causal LM (on any device, meta included): the sizes are read off the
    model and its config (parameters, layers, key/value heads, MLP width, LM-head rows)."""
    shape = model_shape(model, config)
    d_kv = (getattr(config, "num_key_value_heads", None) or config.num_attention_heads) * \
        (shape["attn_dim"] // config.num_attention_heads)
    d_ff = getattr(config, "intermediate_size", None) or 4 * config.hidden_size
    return memory_estimate(sum(p.numel() for p in model.parameters()), n_devices, compute_dtype.itemsize,
                           shape["n_layer"], shape["d_model"], d_kv, d_ff, shape["vocab"], tokens, loss_tokens,
                           checkpointing)


def memory_estimate(n_params, n_devices, compute_bytes, n_layer, d_model, d_kv, d_ff, vocab, tokens, loss_tokens,
                    checkpointing):
    """Approximate bytes per rank: FSDP shards the fp32 parameters (4 B each), their fp32 gradients (4 B) and
    AdamW's two fp32 moments (8 B) over the ranks. Activations of the largest micro-batch (`tokens` = rows x
    padded length): a Llama-style block keeps ~(10 d + 3 d_kv + 4 d_ff) values per token for its backward (norm
    inputs, q/k/v, attention output, MLP gate/up/product; flash/SDPA attention keeps no T^2 scores); with
    activation checkpointing only each block's input (d) is kept, plus one block recomputed at a time. The LM head
    adds logits in the compute dtype and their fp32 copy and softmax (V x (b + 8) bytes) per loss token.
    Leaves out the all-gathered compute copy of one or two blocks, the allocator's slack and the CUDA context."""
    block = (10 * d_model + 3 * d_kv + 4 * d_ff) * compute_bytes
    act = tokens * (n_layer * d_model * compute_bytes + block) if checkpointing else tokens * n_layer * block
    act += loss_tokens * vocab * (compute_bytes + 8)
    shard = n_params / n_devices
    return {"params": 4 * shard, "grads": 4 * shard, "adamw": 8 * shard, "activations": act}
