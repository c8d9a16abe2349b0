#!/usr/bin/env python3
"""Writes PyTorch reference fixtures for elle's BERT (Tests/Fixtures/bert-*.json).

Run by hand with the repository's venv (`scripts/setup.sh --python-heavy` makes it, with torch and
transformers):
    .venv/bin/python scripts/make_bert_fixture.py

The reference is Hugging Face's BertForMaskedLM in float32 without dropout: post-LN blocks,
exact (erf) GELU, MLM head (dense, GELU, LayerNorm, decoder tied to the word embeddings, plus a
bias). Differences from elle's BERT are removed as follows:
- token-type embeddings: one type whose embedding is zero and frozen (elle has none);
- LayerNorm epsilon 1e-5 (fairseq's, and elle's default; Hugging Face's default is 1e-12);
- the attention mask is (token != pad), elle's key padding mask (no sequence is all padding);
- Hugging Face's head projects every position: the masked-LM loss and the gradients are those
  of the masked positions only (labels -100 elsewhere), which is what elle computes; the logits
  of every position are stored too (elle computes them when called without targets).

Each fixture holds, flattened in elle's BERTLayout order (weights [out, in]; q, k, v stacked
into attn.qkv): the parameters, tokens and targets (-1 = not masked), the loss, the logits of
every position, the gradients, and the parameters after one torch.optim.AdamW step (weight
decay on 2-D tensors only). `steps` holds a short clipped training run from the same parameters,
as scripts/make_gpt_fixture.py explains: the batch above and new masked batches, gradient
clipping that acts at every step, AdamW with weight decay 0.1; per step the loss and the gradient
norm before clipping, and the parameters at the end.
"""
import os
import torch
import torch.nn.functional as F
from fixture_steps import clipped_steps, compact_json
from transformers import BertConfig, BertForMaskedLM

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures")
ADAM = dict(lr=1e-3, beta1=0.9, beta2=0.98, eps=1e-6, weight_decay=0.01)
STEPS = dict(count=3, lr=1e-3, beta1=0.9, beta2=0.98, eps=1e-6, weight_decay=0.1, clip=1.0)


def elle_tensors(model, layers):
    """(name, tensor) in elle's BERTLayout order, weights [out, in] as nn.Linear stores them."""
    b, head = model.bert, model.cls.predictions
    e = b.embeddings
    out = [("wte", e.word_embeddings.weight), ("wpe", e.position_embeddings.weight),
           ("emb_ln.weight", e.LayerNorm.weight), ("emb_ln.bias", e.LayerNorm.bias)]
    for l in range(layers):
        layer = b.encoder.layer[l]
        s, a = layer.attention.self, layer.attention.output
        p = f"blocks.{l}."
        out += [
            (p + "attn.qkv.weight", (s.query.weight, s.key.weight, s.value.weight)),
            (p + "attn.qkv.bias", (s.query.bias, s.key.bias, s.value.bias)),
            (p + "attn.proj.weight", a.dense.weight), (p + "attn.proj.bias", a.dense.bias),
            (p + "ln1.weight", a.LayerNorm.weight), (p + "ln1.bias", a.LayerNorm.bias),
            (p + "mlp.fc.weight", layer.intermediate.dense.weight), (p + "mlp.fc.bias", layer.intermediate.dense.bias),
            (p + "mlp.proj.weight", layer.output.dense.weight), (p + "mlp.proj.bias", layer.output.dense.bias),
            (p + "ln2.weight", layer.output.LayerNorm.weight), (p + "ln2.bias", layer.output.LayerNorm.bias),
        ]
    out += [("head.dense.weight", head.transform.dense.weight), ("head.dense.bias", head.transform.dense.bias),
            ("head.ln.weight", head.transform.LayerNorm.weight), ("head.ln.bias", head.transform.LayerNorm.bias),
            ("head.bias", head.bias)]
    return out


def flatten(model, layers, grad=False):
    values = []
    for _, t in elle_tensors(model, layers):
        parts = t if isinstance(t, tuple) else (t,)
        parts = [(p.grad if grad else p).detach() for p in parts]
        values.append(torch.cat([p.reshape(-1) for p in parts]))
    return torch.cat(values).tolist()


def make(name, layers, width, heads, vocab, seq, batch, seed, pads):
    torch.manual_seed(seed)
    pad, mask = vocab - 3, vocab - 2
    cfg = BertConfig(vocab_size=vocab, hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=4 * width, hidden_act="gelu", hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, max_position_embeddings=seq, type_vocab_size=1,
                     layer_norm_eps=1e-5, pad_token_id=pad, tie_word_embeddings=True)
    model = BertForMaskedLM(cfg).float()
    model.train()
    tt = model.bert.embeddings.token_type_embeddings.weight
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "LayerNorm.weight" in pname:
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif pname.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
        tt.zero_()
    tt.requires_grad_(False)
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight

    initial = {k: v.clone() for k, v in model.state_dict().items()}

    def draw_batch():
        """Ordinary tokens, pads at the end of the last sequence, then about 30% of the other
        positions chosen (twice BERT's 15%, so the small fixture has enough predicted rows):
        80% become the mask token, 10% a random token, 10% stay."""
        tokens = torch.randint(0, vocab - 3, (batch, seq))
        if pads:
            tokens[-1, seq - pads:] = pad
        targets = torch.full((batch, seq), -1)
        chosen = torch.rand(batch, seq) < 0.3
        chosen[tokens == pad] = False
        chosen[0, 1] = True
        targets[chosen] = tokens[chosen]
        u = torch.rand(batch, seq)
        tokens[chosen & (u < 0.8)] = mask
        random_ids = torch.randint(0, vocab - 3, (batch, seq))
        replace = chosen & (u >= 0.8) & (u < 0.9)
        tokens[replace] = random_ids[replace]
        return tokens, targets

    def loss_of(tokens, targets):
        logits = model(input_ids=tokens, attention_mask=(tokens != pad).long()).logits
        return logits, F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1), ignore_index=-1)

    tokens, targets = draw_batch()
    chosen = targets >= 0
    logits, loss = loss_of(tokens, targets)
    loss.backward()

    params = flatten(model, layers)
    grads = flatten(model, layers, grad=True)

    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.dim() == 2]
    no_decay = [p for p in trainable if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": ADAM["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=ADAM["lr"], betas=(ADAM["beta1"], ADAM["beta2"]), eps=ADAM["eps"])
    opt.step()
    updated = flatten(model, layers)

    # The clipped steps, from the initial parameters: the batch above, then new ones.
    batches = [(tokens, targets)] + [draw_batch() for _ in range(STEPS["count"] - 1)]
    steps = clipped_steps(model, initial, batches, lambda t, y: loss_of(t, y)[1], decay, no_decay, STEPS, lambda: flatten(model, layers))
    norms = ", ".join(format(r["norm"], ".3f") for r in steps["batches"])

    fixture = {
        "source": f"torch {torch.__version__}, BertForMaskedLM, scripts/make_bert_fixture.py seed {seed}",
        "config": dict(layers=layers, width=width, heads=heads, vocab=vocab, seq=seq, batch=batch, pad=pad),
        "adam": ADAM,
        "tokens": tokens.reshape(-1).tolist(), "targets": targets.reshape(-1).tolist(),
        "loss": loss.item(), "logits": logits.detach().reshape(-1).tolist(),
        "parameters": params, "gradients": grads, "updated": updated, "steps": steps,
    }
    path = os.path.join(OUT, f"bert-{name}.json")
    with open(path, "w") as f:
        f.write(compact_json(fixture))
    print(f"wrote {path}: loss {loss.item():.6f} over {int(chosen.sum())} masked positions, {len(params)} parameters; "
          f"{len(steps['batches'])} clipped steps, gradient norms {norms}")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    # TESTING.md's tiny config, and an odd one (sizes not multiples of the SIMD width, padding).
    make("tiny", layers=2, width=16, heads=2, vocab=32, seq=8, batch=2, seed=1, pads=0)
    make("odd", layers=2, width=40, heads=4, vocab=50, seq=19, batch=3, seed=2, pads=5)
