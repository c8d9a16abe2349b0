#!/usr/bin/env python3
"""elle BERT masked-LM training steps beside PyTorch's BertForMaskedLM (scripts/torch_bert_bench.py:
the same masking as elle's bench), fp32 and bf16 (ANCHOR_MODE=bf16: torch.autocast), alternating
rounds; see scripts/bench_step.py.

    python3 scripts/bench_bert.py --torch .venv/bin/python [--rounds 5] [--before OLD_ELLE]
"""
import os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_step import main

if __name__ == "__main__":
    main("bert")
