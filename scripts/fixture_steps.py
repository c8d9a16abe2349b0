"""What scripts/make_gpt_fixture.py and make_bert_fixture.py share: the clipped training steps of
a fixture's `steps` entry, and the compact JSON both write."""
import json
import torch


def clipped_steps(model, initial, batches, loss_of, decay, no_decay, settings, flatten):
    """From the `initial` state dict, one update per (tokens, targets) batch: loss_of(tokens,
    targets) -> loss, backward, gradient clipping at settings["clip"] (asserted to act), and
    torch.optim.AdamW with settings' lr, betas, eps, and weight decay on `decay` only. Returns the
    settings with each step's loss and pre-clip gradient norm and the parameters at the end
    (`flatten()`, elle's layout)."""
    model.load_state_dict(initial)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": settings["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=settings["lr"], betas=(settings["beta1"], settings["beta2"]), eps=settings["eps"])
    records = []
    for tokens, targets in batches:
        opt.zero_grad()
        loss = loss_of(tokens, targets)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(decay + no_decay, settings["clip"]).item()
        assert norm > settings["clip"], f"gradient norm {norm} would not be clipped at {settings['clip']}"
        opt.step()
        records.append({"tokens": tokens.reshape(-1).tolist(), "targets": targets.reshape(-1).tolist(),
                        "loss": loss.item(), "norm": norm})
    return dict(settings, batches=records, updated=flatten())


def compact_json(value):
    """JSON with floats at 9 significant digits: enough to round-trip float32 exactly."""
    if isinstance(value, float):
        return format(value, ".9g")
    if isinstance(value, list):
        return "[" + ",".join(compact_json(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k) + ":" + compact_json(v) for k, v in value.items()) + "}"
    return json.dumps(value)
