"""Model FLOPs of a training step, for throughput and MFU reporting (pure arithmetic, no JAX).

The convention is the usual "model FLOPs" one (Kaplan et al. 2020 §2.1; PaLM, Chowdhery et al.
2022, App. B): a matmul with a [m, n] weight costs 2·m·n FLOPs per token forward and twice that
backward (gradients w.r.t. activations and weights), so 6·N_matmul per trained token, plus
attention's two activation-activation matmuls. Rematerialisation is NOT counted (this is MFU, not
hardware-FLOPs utilisation), nor are norms, softmax, the loss, the embedding lookup or the
optimizer update (all O(N) or O(T·d), negligible next to the matmuls when the model runs well).
"""

from hh.models.transformer import TransformerConfig


def matmul_params(cfg: TransformerConfig) -> int:
    """Parameters that take part in matmuls: every block's 2-D kernels plus the LM head.

    Per layer: query [d, H·dh], key and value [d, KV·dh] each, out [H·dh, d]; the MLP's up and down
    [d, d_ff] (plus gate for SwiGLU). Then the unembedding [d, vocab] once, whether it is the
    separate `lm_head` or the tied embedding matrix (`embed.attend`): either way it is a matmul.
    Not counted: the input embedding and learned position embeddings (lookups, not matmuls),
    norm scales/biases and dense biases (elementwise).
    For the paper presets (H·dh = d, d_ff = 4d, GELU) this is 12·L·d² + d·vocab.
    """
    d, q_width, kv_width = cfg.d_model, cfg.n_heads * cfg.d_head, cfg.kv_heads * cfg.d_head
    attention = d * q_width + 2 * d * kv_width + q_width * d
    mlp = (3 if cfg.activation == "swiglu" else 2) * d * cfg.d_ff
    return cfg.n_layers * (attention + mlp) + d * cfg.vocab_size


def attention_flops_per_token(cfg: TransformerConfig, seq_len: int) -> float:
    """QKᵀ and AV, forward + backward, per token: 3 · 2 matmuls · 2·seq·H·dh per layer.

    = 12·L·seq·H·dh (= 12·L·d·seq for the presets). Counts the full seq×seq score matrix, as the
    dense kernel computes it (a causal-aware kernel would do about half). Uses the query width
    H·dh for both matmuls: with grouped KV heads each query head still does its own QKᵀ and AV.
    """
    return 12.0 * cfg.n_layers * seq_len * cfg.n_heads * cfg.d_head


def train_flops_per_token(cfg: TransformerConfig, seq_len: int) -> float:
    """Model FLOPs of one training step per token: 6·N_matmul + 12·L·seq·H·dh.

    Multiply by tokens per step (batch · seq_len) for the step's FLOPs. For the 13M preset
    (L=4, d=512, vocab 65536) at seq 1024: 6·(12·4·512² + 512·65536) + 12·4·512·1024
    = 276,824,064 + 25,165,824 = 301,989,888 FLOPs per token.
    """
    return 6.0 * matmul_params(cfg) + attention_flops_per_token(cfg, seq_len)
