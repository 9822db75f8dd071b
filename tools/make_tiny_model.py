"""Writes the tiny Llama-architecture model shipped in `pytest_mgpu/engines/tiny_model/`.

Real tokenizer files (a byte-level BPE trained here on a few sentences, so every byte string
encodes), a Llama config small enough that vLLM's CPU build serves thousands of tokens/s, and
no weights: engines load it with `--load-format dummy`. Re-run only to change its shape.
usage: python tools/make_tiny_model.py [OUTDIR]
"""

import json
import random
import sys
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

VOCAB = 1024
TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Tensor parallelism splits every layer across devices; pipeline parallelism splits the layers.",
    "Time to first token, time per output token and inter-token latency measure serving speed.",
    "NVLink joins GPUs directly; PCIe switches, host bridges and the CPU interconnect are slower.",
    "A regression gate compares today's numbers with a baseline taken on the same hardware.",
] * 50
# Seeded pseudo-words give the trainer enough distinct pairs to fill the whole vocabulary.
_rng = random.Random(0)
_SYL = ["ka", "to", "ri", "mu", "se", "lo", "na", "vi", "de", "gu", "pe", "zo", "xa", "qu", "fi", "jo", "by", "wh"]
TEXT += [" ".join("".join(_rng.choice(_SYL) for _ in range(_rng.randint(1, 4))) for _ in range(12))
         for _ in range(4000)]

out = Path(sys.argv[1] if len(sys.argv) > 1 else "pytest_mgpu/engines/tiny_model")
out.mkdir(parents=True, exist_ok=True)
tok = Tokenizer(models.BPE(unk_token=None))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(
    vocab_size=VOCAB, special_tokens=["<s>", "</s>"],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
)
tok.train_from_iterator(TEXT, trainer)
fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
fast.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
fast.model_max_length = 4096
fast.save_pretrained(out)
config = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16",
    "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 4,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32,
    "vocab_size": VOCAB, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "bos_token_id": fast.bos_token_id, "eos_token_id": fast.eos_token_id,
    "tie_word_embeddings": False, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
}
(out / "config.json").write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
(out / "generation_config.json").write_text(json.dumps(
    {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"]}, indent=1) + "\n")
assert len(fast) == VOCAB, f"tokenizer has {len(fast)} tokens, config says {VOCAB}"
print(out, sorted(p.name for p in out.iterdir()))
