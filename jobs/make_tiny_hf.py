"""Write a tiny Hugging Face model (stock transformers, no download) for the pretrained plans.

    python jobs/make_tiny_hf.py ./models/tiny-llama                    # Llama: llama3 RoPE, GQA
    python jobs/make_tiny_hf.py ./models/tiny-qwen2 --family qwen2     # Qwen2: q/k/v biases

jobs/plans/solar_tiny.yaml and llama_pro_tiny.yaml start from ./models/tiny-llama.
"""

import argparse
import sys
from pathlib import Path

# Run from a checkout (or a `ray job submit --working-dir`): import raygrow from there.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raygrow.tiny_hf import FAMILIES, write_tiny_model

if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "out", help="directory to write (config.json, model.safetensors, tokenizer)"
    )
    parser.add_argument("--family", choices=sorted(FAMILIES), default="llama")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"wrote {write_tiny_model(args.out, args.family, args.seed)}")
