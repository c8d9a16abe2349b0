# PyTorch CPU anchor: tokens/s of a BERT masked-LM training step (fwd+bwd+AdamW), the BERT
# counterpart of ../shared/anchors/torch_gpt_bench.py (same FLOP count: 6 * parameters * tokens
# + 12 * L * D * T * tokens). Hugging Face BertForMaskedLM, no dropout, 15% of positions masked
# (80% mask id, 10% random, 10% kept; labels -100 elsewhere), one masking for every step; its
# head projects every position (elle's only the masked ones).
# Usage: python torch_bert_bench.py L D H V T B threads steps
# ANCHOR_MODE=fp32 (default) | bf16 (torch.autocast("cpu", bfloat16), as ../shared/anchors does)
import contextlib, os, sys, time, torch
from transformers import BertConfig, BertForMaskedLM
L, D, H, V, T, B, threads, steps = map(int, sys.argv[1:9])
torch.set_num_threads(threads); torch.manual_seed(0)
cfg = BertConfig(num_hidden_layers=L, hidden_size=D, num_attention_heads=H, intermediate_size=4 * D, vocab_size=V,
                 max_position_embeddings=T, hidden_dropout_prob=0, attention_probs_dropout_prob=0)
m = BertForMaskedLM(cfg); m.train()
opt = torch.optim.AdamW(m.parameters(), lr=1e-4, fused=False)
mode = os.environ.get("ANCHOR_MODE", "fp32")
ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if mode == "bf16" else contextlib.nullcontext
x = torch.randint(0, V - 3, (B, T))
chosen = torch.rand(B, T) < 0.15
u = torch.rand(B, T)
labels = torch.where(chosen, x, torch.full_like(x, -100))
x = torch.where(chosen & (u < 0.8), torch.full_like(x, V - 2), x)
x = torch.where(chosen & (u >= 0.8) & (u < 0.9), torch.randint(0, V - 3, (B, T)), x)
def step():
    opt.zero_grad(set_to_none=True)
    with ctx():
        out = m(input_ids=x, labels=labels)
    out.loss.backward(); opt.step()
    return out.loss.item()
for _ in range(2): step()
t0 = time.perf_counter()
for _ in range(steps): step()
dt = (time.perf_counter() - t0) / steps
n = sum(p.numel() for p in m.parameters())
flops = 6 * n * B * T + 12 * L * D * T * B * T  # params + attention
print(f"torch {torch.__version__} {mode} BertForMaskedLM L{L} D{D} H{H} V{V} T{T} B{B} threads={threads} params={n/1e6:.2f}M step={dt*1e3:.1f}ms tok/s={B*T/dt:.0f} GFLOP/s={flops/dt/1e9:.1f}")
