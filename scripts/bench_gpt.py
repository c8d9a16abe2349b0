#!/usr/bin/env python3
"""elle GPT training steps beside PyTorch's GPT2LMHeadModel (../shared/anchors/torch_gpt_bench.py),
fp32 and bf16 (ANCHOR_MODE=bf16: torch.autocast), alternating rounds; see scripts/bench_step.py.

    python3 scripts/bench_gpt.py --torch .venv/bin/python [--rounds 5] [--shapes 0,1] [--before OLD_ELLE]
"""
import os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_step import main

if __name__ == "__main__":
    main("gpt")
