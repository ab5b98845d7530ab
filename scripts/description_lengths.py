"""Token lengths of the shipped long descriptions under the offline encoder's tokenizer.

Usage: python3 scripts/description_lengths.py [max_length]   (prints mean tokens and the share cut at max_length)
"""
import statistics
import sys

from transformers import AutoTokenizer

from tgdmat.text.describe import load_descriptions, shipped_description_path
from tgdmat.text.encoder import _resolve_path

max_length = int(sys.argv[1]) if len(sys.argv) > 1 else 512
tokenizer = AutoTokenizer.from_pretrained(_resolve_path("minilm"))
for dataset in ("perov_5", "carbon_24"):
    for split in ("test", "train"):
        path = shipped_description_path(dataset, split)
        lengths = [len(tokenizer(t)["input_ids"]) for t in load_descriptions(path).values()]
        cut = sum(n > max_length for n in lengths) / len(lengths)
        print(f"{path.name}: {len(lengths)} descriptions, mean {statistics.mean(lengths):.0f} tokens, {100 * cut:.1f}% longer than {max_length}")
