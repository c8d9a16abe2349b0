#!/usr/bin/env python3
"""Writes the PyTorch reference of the knowledge-inheritance loss (Tests/Fixtures/distillation.json).

Run by hand with the repository's venv:
    .venv/bin/python scripts/make_distillation_fixture.py

For random student and teacher logits (rows x vocabulary; some rows without a target, as
BERT's unmasked positions) the loss

    L = (1 - a) * CE + a * tau^2 * KL(p_T(tau) || p_S(tau)),   p(tau) = softmax(logits / tau),

both terms averaged over the rows with a target, is computed with torch's own pieces:
F.cross_entropy(ignore_index=-1) and F.kl_div(log_softmax(student / tau), p_T, reduction="sum")
/ rows, where p_T is softmax(teacher / tau) over the whole vocabulary ("full") or over the
teacher's K largest logits, renormalized, 0 elsewhere ("topK": the top-K cache path). The
gradient with respect to the student logits comes from autograd. Cases: tau 1, 2 and 4, full
and top-K, a = 0.6, float64 throughout.
"""
import json, os
import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "distillation.json")
ROWS, VOCAB, TOPK, WEIGHT = 7, 37, 5, 0.6


def case(student, teacher, targets, tau, top_k):
    z = student.clone().requires_grad_(True)
    counted = int((targets >= 0).sum())
    ce = F.cross_entropy(z, targets, ignore_index=-1, reduction="sum") / counted
    keep = targets >= 0
    if top_k is None:
        q = F.softmax(teacher / tau, dim=-1)
        ids = None
    else:
        values, ids = teacher.topk(top_k, dim=-1)
        q = torch.zeros_like(teacher).scatter(-1, ids, F.softmax(values / tau, dim=-1))
    kl = F.kl_div(F.log_softmax(z / tau, dim=-1)[keep], q[keep], reduction="sum") / counted
    loss = (1 - WEIGHT) * ce + WEIGHT * tau * tau * kl
    loss.backward()
    result = {"temperature": tau, "topK": top_k, "loss": loss.item(), "crossEntropy": ce.item(), "kl": kl.item(),
              "gradient": z.grad.flatten().tolist()}
    if ids is not None:
        result["ids"] = ids.flatten().tolist()
        result["teacherTopK"] = values.flatten().tolist()
    return result


def main():
    g = torch.Generator().manual_seed(26)
    student = (torch.rand(ROWS, VOCAB, generator=g, dtype=torch.float64) * 8 - 4).float().double()
    teacher = (torch.rand(ROWS, VOCAB, generator=g, dtype=torch.float64) * 8 - 4).float().double()
    targets = torch.randint(0, VOCAB, (ROWS,), generator=g)
    targets[[2, 5]] = -1  # rows without a target (BERT's unmasked positions)
    cases = [case(student, teacher, targets, tau, k) for tau in (1.0, 2.0, 4.0) for k in (None, TOPK)]
    fixture = {"rows": ROWS, "vocab": VOCAB, "weight": WEIGHT, "targets": targets.tolist(),
               "student": student.flatten().tolist(), "teacher": teacher.flatten().tolist(), "cases": cases}
    with open(OUT, "w") as f:
        json.dump(fixture, f)
    print(f"wrote {OUT}: {len(cases)} cases, torch {torch.__version__}")


if __name__ == "__main__":
    main()
