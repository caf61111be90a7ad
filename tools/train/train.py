#!/usr/bin/env python3
"""Trains ReSA Chat's demo model: a Llama-architecture model of ~11.4M parameters (RMSNorm,
RoPE, SwiGLU, GQA, tied embeddings) with an 8,192-token context, on the Debian corpus of
make_corpus.sh mixed with synthetic long-context retrieval tasks (pass keys and facts at random
depths of long text, asked at the end, raw and in ChatML), so that dense attention genuinely
retrieves from far away. bf16 autocast, one GPU, a wall-clock budget (default 10 minutes of
optimisation; the whole run fits in 15 minutes on one H100).

Writes a Hugging Face folder (config.json, generation_config.json, safetensors shards of at most
15 MB with their index, tokenizer.model, tokenizer_config.json with a ChatML chat template,
special_tokens_map.json), then checks that transformers loads it, matches this script's logits
and generates.

  python3 tools/train/train.py                       # out/ from make_corpus.sh + train_tokenizer.sh
  python3 tools/train/train.py --export resources/models/demo
  python3 tools/train/train.py --smoke               # 2 steps of a toy model on the CPU
"""
import argparse
import copy
import json
import lzma
import math
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
T0 = time.time()  # the script's start: --total-minutes counts from here
SPECIALS = {"<unk>": 0, "<s>": 1, "</s>": 2, "<|im_start|>": 3, "<|im_end|>": 4}
BOS, EOS, IM_START, IM_END = 1, 2, 3, 4
# The chat template of tokenizer_config.json (ChatML, as ReSA Chat's engine renders it: no BOS).
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")

# resa-eval's pass-key prompt (app/eval/tasks.cpp), word for word.
CLASSIC_FILLER = ("The grass is green. The sky is blue. The sun is yellow. Here we go. There and "
                  "back again. ")
PASSKEY_INTRO = ("There is an important piece of information hidden inside a lot of irrelevant "
                 "text. Find it and memorize it. I will quiz you about the important information "
                 "there.\n")


# ---------------------------------------------------------------------------------------------
# Tokenizer: the sentencepiece Python module when installed, else Debian's spm_encode.

class Tokenizer:
    def __init__(self, model_path):
        self.model_path = str(model_path)
        try:
            import sentencepiece as spm
            self.sp = spm.SentencePieceProcessor(model_file=self.model_path)
        except ImportError:
            self.sp = None
            if not shutil.which("spm_encode"):
                sys.exit("train.py: neither the sentencepiece module nor spm_encode is available "
                         "(pip install sentencepiece, or apt-get install sentencepiece)")
        if self.sp is not None:
            self.vocab_size = self.sp.get_piece_size()
            self.newline = self.sp.piece_to_id("<0x0A>")
        else:
            vocab = subprocess.run(["spm_export_vocab", "--model", self.model_path],
                                   capture_output=True, text=True, check=True).stdout
            pieces = [line.split("\t")[0] for line in vocab.rstrip("\n").split("\n")]
            self.vocab_size = len(pieces)
            self.newline = pieces.index("<0x0A>")
            # spm_encode reads lines: newlines travel as U+2424 (not in the vocabulary, so three
            # byte pieces) and come back as the <0x0A> piece.
            self.mark = "\u2424"
            self.mark_ids = [int(x) for x in subprocess.run(
                ["spm_encode", "--model", self.model_path, "--output_format=id"],
                input="a" + self.mark + "\n", capture_output=True, text=True,
                check=True).stdout.split()][-3:]

    def encode_batch(self, texts, threads=8):
        """Plain text to ids, one dummy prefix per text (as the engine's encode())."""
        if self.sp is not None:
            return self.sp.encode(texts, num_threads=threads)
        proc = subprocess.run(["spm_encode", "--model", self.model_path, "--output_format=id"],
                              input="\n".join(t.replace("\n", self.mark) for t in texts) + "\n",
                              capture_output=True, text=True, check=True)
        out = []
        for line in proc.stdout.split("\n")[:len(texts)]:
            ids = [int(x) for x in line.split()]
            i, fixed = 0, []
            while i < len(ids):
                if ids[i:i + 3] == self.mark_ids:
                    fixed.append(self.newline)
                    i += 3
                else:
                    fixed.append(ids[i])
                    i += 1
            out.append(fixed)
        return out

    def encode_with_specials(self, text):
        """As the engine's Tokenizer::encode_with_specials: specials become their ids and every
        stretch between them is encoded on its own (its own dummy prefix)."""
        parts = re.split(r"(<\|im_start\|>|<\|im_end\|>|<s>|</s>)", text)
        texts = [p for p in parts if p and p not in SPECIALS]
        encoded = iter(self.encode_batch(texts) if texts else [])
        ids = []
        for p in parts:
            if not p:
                continue
            ids += [SPECIALS[p]] if p in SPECIALS else next(encoded)
        return ids

    def decode(self, ids):
        ids = [i for i in ids if i not in SPECIALS.values()]
        if self.sp is not None:
            return self.sp.decode(ids)
        proc = subprocess.run(["spm_decode", "--model", self.model_path, "--input_format=id"],
                              input=" ".join(map(str, ids)) + "\n", capture_output=True,
                              text=True, check=True)
        return proc.stdout.rstrip("\n")


# ---------------------------------------------------------------------------------------------
# Data: the corpus as one token stream (documents separated by </s>), and synthetic tasks.

def load_documents(corpus_xz, limit_bytes=0):
    with lzma.open(corpus_xz, "rt", encoding="utf-8") as f:
        text = f.read(limit_bytes) if limit_bytes else f.read()
    return [d for d in text.split("\n\f\n") if len(d) > 200]


def corpus_tokens(tok, docs, cache):
    if cache.exists():
        arr = np.load(cache)
        print(f"corpus: {len(arr) / 1e6:.1f}M tokens from {cache}", flush=True)
        return arr
    t0 = time.time()
    ids = []
    for i in range(0, len(docs), 2000):
        for d in tok.encode_batch(docs[i:i + 2000], threads=os.cpu_count() or 8):
            ids.extend(d)
            ids.append(EOS)
    arr = np.asarray(ids, dtype=np.uint16)
    np.save(cache, arr)
    print(f"corpus: {len(docs)} documents, {len(arr) / 1e6:.1f}M tokens "
          f"({time.time() - t0:.0f} s)", flush=True)
    return arr


NAMES = ["Alice", "Bruno", "Chen", "Dana", "Emeka", "Freya", "Goran", "Hana", "Ivan", "Jonas",
         "Kenji", "Laila", "Marco", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tariq",
         "Uma", "Viktor", "Wen", "Ximena", "Yusuf", "Zoe"]
WORDS = ["apple", "anchor", "banjo", "candle", "copper", "dolphin", "ember", "falcon", "garnet",
         "harbor", "igloo", "jasmine", "kettle", "lantern", "marble", "nectar", "orchid",
         "pepper", "quartz", "river", "saffron", "timber", "umbrella", "velvet", "walnut",
         "yonder", "zephyr", "maple", "cobalt", "meadow", "thistle", "pebble", "violet"]
CITIES = ["Lisbon", "Oslo", "Nairobi", "Kyoto", "Lima", "Quebec", "Tunis", "Hanoi", "Porto",
          "Dublin", "Krakow", "Seville", "Bergen", "Ghent", "Turin", "Valencia"]
COLORS = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple"]


def make_fact(rng, kind=None):
    """One (statement, question prefix, answer) triple."""
    kind = rng.randrange(4) if kind is None else kind
    if kind == 0:
        key = str(rng.randrange(10000, 100000))
        return (f"The pass key is {key}. Remember it. {key} is the pass key.",
                "What is the pass key? The pass key is", f" {key}.")
    if kind == 1:
        name, word = rng.choice(NAMES), rng.choice(WORDS)
        return (f"The secret word of {name} is {word}.",
                f"What is the secret word of {name}? The secret word of {name} is", f" {word}.")
    if kind == 2:
        name, city = rng.choice(NAMES), rng.choice(CITIES)
        return (f"{name} lives in {city}.", f"Where does {name} live? {name} lives in",
                f" {city}.")
    color, code = rng.choice(COLORS), str(rng.randrange(1000, 10000))
    return (f"The code of the {color} door is {code}.",
            f"What is the code of the {color} door? The code of the {color} door is", f" {code}.")


class TaskMaker:
    """Long-context retrieval tasks as token ids plus a mask of the answer tokens."""

    def __init__(self, tok, docs, corpus, seed):
        self.tok, self.docs, self.corpus = tok, docs, corpus
        self.rng = random.Random(seed)
        self.classic = tok.encode_batch([CLASSIC_FILLER.strip()])[0]

    def filler_text(self, n_tokens):
        """Natural filler: consecutive documents from a random point, about n_tokens long."""
        out, est = [], 0
        i = self.rng.randrange(len(self.docs))
        while est < n_tokens:
            d = self.docs[i % len(self.docs)]
            out.append(d)
            est += len(d) // 3.6
            i += 1
        text = "\n\n".join(out)
        return text[:int(n_tokens * 3.6)]

    def make(self, length):
        """A task of at most `length` tokens: (ids, answer mask)."""
        rng = self.rng
        chat = rng.random() < 0.35
        if not chat and rng.random() < 0.3:
            # resa-eval's pass-key prompt, word for word.
            statement, question, answer = make_fact(rng, kind=0)
            units = max(0, (length - 90) // max(1, len(self.classic)))
            before = rng.randint(0, units)
            text = (PASSKEY_INTRO + CLASSIC_FILLER * before + statement + " " +
                    CLASSIC_FILLER * (units - before) + "\n" + question + answer)
            ids = [BOS] + self.tok.encode_batch([text])[0] + [EOS]
        else:
            # Facts at random depths of natural text (documents, manuals, code), one of them
            # asked at the end, raw or as a ChatML conversation.
            facts = [make_fact(rng) for _ in range(rng.choice([1, 1, 2, 3]))]
            statement, question, answer = facts[rng.randrange(len(facts))]
            filler = re.split(r"(?<=[.!?\n])\s+", self.filler_text(length - 40 * len(facts) - 60))
            slots = sorted(rng.randrange(len(filler) + 1) for _ in facts)
            pieces, last = [], 0
            for (st, _, _), at in zip(facts, slots):
                pieces += filler[last:at] + [st]
                last = at
            body = " ".join(pieces + filler[last:])
            if chat:
                q, lead = question.split("? ", 1)
                text = (f"<|im_start|>user\n{body}\n\n{q}?<|im_end|>\n<|im_start|>assistant\n"
                        f"{lead}{answer}<|im_end|>\n")
                ids = self.tok.encode_with_specials(text)
            else:
                intro = PASSKEY_INTRO if statement.startswith("The pass key") else ""
                ids = [BOS] + self.tok.encode_batch([f"{intro}{body}\n{question}{answer}"])[0] + [EOS]
        if len(ids) > length:
            ids = ids[:1] + ids[len(ids) - length + 1:]  # cut filler from the front
        # The answer's tokens: the last occurrence of its pieces (digits are one piece each).
        mask = np.zeros(len(ids), dtype=np.bool_)
        want = self.tok.encode_batch([answer.strip().rstrip(".")])[0]
        for start in range(len(ids) - len(want), -1, -1):
            if want and ids[start:start + len(want)] == want:
                mask[start:start + len(want)] = True
                break
        return np.asarray(ids, dtype=np.int64), mask


class Batches(torch.utils.data.IterableDataset):
    """Rows of seq_len+1 tokens: corpus windows, or packed retrieval tasks of random lengths."""

    def __init__(self, tok, docs, corpus, seq_len, batch, task_share, seed):
        super().__init__()
        self.tok, self.docs, self.corpus = tok, docs, corpus
        self.seq_len, self.batch, self.task_share, self.seed = seq_len, batch, task_share, seed

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = info.id if info else 0
        rng = np.random.default_rng(self.seed * 1000 + wid)
        tasks = TaskMaker(self.tok, self.docs, self.corpus, self.seed * 1000 + wid)
        n = self.seq_len + 1
        while True:
            x = np.zeros((self.batch, n), dtype=np.int64)
            m = np.zeros((self.batch, n), dtype=np.bool_)
            for b in range(self.batch):
                if rng.random() >= self.task_share:
                    s = int(rng.integers(0, len(self.corpus) - n))
                    x[b] = self.corpus[s:s + n]
                    continue
                # Pack tasks until the row is full; lengths favour the long end.
                pos = 0
                while pos < n:
                    room = n - pos
                    want = int(min(room, max(64, self.seq_len * rng.beta(2.0, 1.0))))
                    if room < 200:
                        s = int(rng.integers(0, len(self.corpus) - room))
                        x[b, pos:] = self.corpus[s:s + room]
                        break
                    ids, mask = tasks.make(want)
                    k = min(len(ids), room)
                    x[b, pos:pos + k], m[b, pos:pos + k] = ids[:k], mask[:k]
                    pos += k
            yield torch.from_numpy(x), torch.from_numpy(m)


# ---------------------------------------------------------------------------------------------
# Model: Llama, written so that its weights are Hugging Face's LlamaForCausalLM's as they are
# (rotate-half RoPE, q/k/v/o, gate/up/down, RMSNorm weights).

class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (xf * self.weight.float()).to(x.dtype)


def rope_tables(head_dim, length, theta, device):
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))
    t = torch.arange(length, device=device).float()
    freqs = torch.outer(t, inv)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat([-b, a], dim=-1)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, hd = c["hidden_size"], c["head_dim"]
        self.nh, self.nkv, self.hd = c["num_attention_heads"], c["num_key_value_heads"], hd
        self.input_layernorm = RMSNorm(d, c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(d, c["rms_norm_eps"])
        self.q_proj = nn.Linear(d, self.nh * hd, bias=False)
        self.k_proj = nn.Linear(d, self.nkv * hd, bias=False)
        self.v_proj = nn.Linear(d, self.nkv * hd, bias=False)
        self.o_proj = nn.Linear(self.nh * hd, d, bias=False)
        self.gate_proj = nn.Linear(d, c["intermediate_size"], bias=False)
        self.up_proj = nn.Linear(d, c["intermediate_size"], bias=False)
        self.down_proj = nn.Linear(c["intermediate_size"], d, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.nkv, self.hd).transpose(1, 2)
        # RoPE in the residual stream's precision, attention in the projections' (bf16 under
        # autocast, so SDPA takes its flash kernel).
        q = (q * cos + rotate_half(q) * sin).to(v.dtype)
        k = (k * cos + rotate_half(k) * sin).to(v.dtype)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        x = x + self.o_proj(a.transpose(1, 2).reshape(B, T, self.nh * self.hd))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList(Block(c) for _ in range(c["num_hidden_layers"]))
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        cos, sin = rope_tables(c["head_dim"], c["max_position_embeddings"], c["rope_theta"], "cpu")
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.apply(self._init)
        for blk in self.layers:  # GPT-2 style scaled residual projections
            for p in (blk.o_proj.weight, blk.down_proj.weight):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * c["num_hidden_layers"]))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, ids):
        T = ids.shape[1]
        x = self.embed_tokens(ids)
        cos, sin = self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype)
        for blk in self.layers:
            x = blk(x, cos, sin)
        return F.linear(self.norm(x), self.embed_tokens.weight)  # tied lm_head


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# Export in Hugging Face's layout.

def hf_state_dict(model):
    sd = {"model.embed_tokens.weight": model.embed_tokens.weight,
          "model.norm.weight": model.norm.weight}
    for i, b in enumerate(model.layers):
        p = f"model.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            sd[p + f"self_attn.{name}.weight"] = getattr(b, name).weight
        for name in ("gate_proj", "up_proj", "down_proj"):
            sd[p + f"mlp.{name}.weight"] = getattr(b, name).weight
        sd[p + "input_layernorm.weight"] = b.input_layernorm.weight
        sd[p + "post_attention_layernorm.weight"] = b.post_attention_layernorm.weight
    return {k: v.detach().to("cpu", torch.bfloat16).contiguous() for k, v in sd.items()}


def write_safetensors(path, tensors):
    """The safetensors format by hand (8-byte header size, JSON header, raw little-endian data),
    so the export needs no extra package."""
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        data = t.view(torch.int16).numpy().tobytes()  # the bf16 bits, little-endian
        header[name] = {"dtype": "BF16", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def export(model, c, tokenizer_model, out, shard_bytes=15 * 1000 * 1000):
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("model*.safetensors*"):
        old.unlink()
    sd = hf_state_dict(model)
    shards, cur, size = [], {}, 0
    for name, t in sd.items():
        n = t.numel() * 2
        if cur and size + n > shard_bytes - 64 * 1024:  # room for the header
            shards.append(cur)
            cur, size = {}, 0
        cur[name] = t
        size += n
    shards.append(cur)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(out / fname, shard)
        assert (out / fname).stat().st_size <= shard_bytes, fname
        for name, t in shard.items():
            weight_map[name] = fname
            total += t.numel() * 2
    (out / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
    write_hf_metadata(out, c, tokenizer_model)
    folder_bytes = sum(p.stat().st_size for p in out.iterdir())
    print(f"exported {out}: {len(shards)} shard(s), {folder_bytes / 1e6:.1f} MB in all", flush=True)
    if folder_bytes > 24 * 1000 * 1000:
        sys.exit(f"train.py: {out} holds {folder_bytes} bytes, over the 24 MB budget")


def write_hf_metadata(out, c, tokenizer_model):
    """config.json, generation_config.json, the tokenizer and its config (no torch needed)."""
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": c["vocab_size"], "hidden_size": c["hidden_size"],
        "intermediate_size": c["intermediate_size"], "num_hidden_layers": c["num_hidden_layers"],
        "num_attention_heads": c["num_attention_heads"],
        "num_key_value_heads": c["num_key_value_heads"], "head_dim": c["head_dim"],
        "max_position_embeddings": c["max_position_embeddings"],
        "rms_norm_eps": c["rms_norm_eps"], "rope_theta": c["rope_theta"], "rope_scaling": None,
        "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
        "tie_word_embeddings": True, "bos_token_id": BOS, "eos_token_id": EOS,
        "torch_dtype": "bfloat16", "initializer_range": 0.02, "use_cache": True,
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": BOS, "eos_token_id": [EOS, IM_END], "do_sample": False}, indent=2) + "\n")
    shutil.copy(tokenizer_model, out / "tokenizer.model")
    added = {str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False,
                      "single_word": False, "special": True} for s, i in SPECIALS.items()}
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "add_bos_token": True, "add_eos_token": False,
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": None,
        "legacy": True, "clean_up_tokenization_spaces": False, "model_max_length":
        c["max_position_embeddings"], "added_tokens_decoder": added,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "chat_template": CHAT_TEMPLATE}, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"]}, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def greedy(model, ids, n, device):
    x = torch.tensor([ids], device=device)
    out = []
    for _ in range(n):
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                            enabled=device.type == "cuda"):
            nxt = int(model(x)[0, -1].float().argmax())
        out.append(nxt)
        if nxt in (EOS, IM_END):
            break
        x = torch.cat([x, torch.tensor([[nxt]], device=device)], dim=1)
    return out


def passkey_check(model, tok, device, lengths, per_length=4, seed=7):
    """resa-eval's pass-key prompt at a few lengths and depths, dense: share answered right."""
    rng = random.Random(seed)
    unit = len(tok.encode_batch([CLASSIC_FILLER])[0])
    results = {}
    for L in lengths:
        ok = 0
        for t in range(per_length):
            key = str(rng.randrange(10000, 100000))
            units = max(1, (L - 90) // unit)
            before = int(units * (t + 0.5) / per_length)
            text = (PASSKEY_INTRO + CLASSIC_FILLER * before + f"The pass key is {key}. Remember "
                    f"it. {key} is the pass key. " + CLASSIC_FILLER * (units - before) +
                    "\nWhat is the pass key? The pass key is")
            ids = [BOS] + tok.encode_batch([text])[0]
            ans = tok.decode(greedy(model, ids[-L:], 8, device))
            ok += re.findall(r"\d+", ans)[:1] == [key]
        results[L] = ok / per_length
    return results


def transformers_check(out, model, tok, device):
    try:
        from transformers import AutoModelForCausalLM
    except ImportError:
        print("transformers is not installed: load check skipped", flush=True)
        return
    hf = AutoModelForCausalLM.from_pretrained(str(out), torch_dtype=torch.float32).to(device).eval()
    ids = torch.tensor([[BOS] + tok.encode_batch(["The Debian project is"])[0]], device=device)
    # The reference: this script's model with the weights rounded to bf16, as exported.
    ref_model = copy.deepcopy(model).to(torch.bfloat16).float().eval()
    with torch.no_grad():
        ref = ref_model(ids)
        got = hf(ids).logits
    diff = (ref - got).abs().max().item()
    print(f"transformers: loaded {out}, max |logit difference| {diff:.2e}", flush=True)
    assert diff < 5e-2, "the exported model does not match the trained one"
    gen = hf.generate(ids, max_new_tokens=24, do_sample=False)
    print("transformers generate:", repr(tok.decode(gen[0].tolist())), flush=True)
    try:
        from transformers import AutoTokenizer
        t = AutoTokenizer.from_pretrained(str(out))
        chat = t.apply_chat_template([{"role": "user", "content": "Hello"}], tokenize=False,
                                     add_generation_prompt=True)
        print("transformers tokenizer: chat template renders", repr(chat), flush=True)
    except Exception as e:  # the tokenizer needs sentencepiece / protobuf in transformers
        print(f"transformers tokenizer not loaded ({type(e).__name__}: {e})", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(HERE / "out"), help="corpus.txt.xz, tokenizer.model")
    ap.add_argument("--export", default=None, help="model folder (default: WORK/demo)")
    ap.add_argument("--minutes", type=float, default=10.0, help="optimisation time budget")
    ap.add_argument("--total-minutes", type=float, default=0.0,
                    help="wall-clock limit of the whole run (0: none); optimisation stops early "
                         "enough to leave 90 s for the checks and the export")
    ap.add_argument("--seq-len", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=16, help="sequences per step")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--task-share", type=float, default=0.5,
                    help="share of rows made of synthetic retrieval tasks")
    ap.add_argument("--workers", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="2 steps of a toy model on the CPU")
    args = ap.parse_args()

    work = Path(args.work)
    export_dir = Path(args.export) if args.export else work / ("smoke-demo" if args.smoke else "demo")
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    tok = Tokenizer(work / "tokenizer.model")
    c = dict(vocab_size=tok.vocab_size, hidden_size=384, intermediate_size=864,
             num_hidden_layers=6, num_attention_heads=6, num_key_value_heads=2, head_dim=64,
             max_position_embeddings=8192, rms_norm_eps=1e-5, rope_theta=100000.0)
    if args.smoke:
        c.update(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, max_position_embeddings=512)
        args.seq_len, args.batch, args.workers = 256, 2, 0
    assert args.seq_len <= c["max_position_embeddings"]

    docs = load_documents(work / "corpus.txt.xz", 4 << 20 if args.smoke else 0)
    cache = work / ("tokens-smoke.npy" if args.smoke else "tokens.npy")
    corpus = corpus_tokens(tok, docs, cache)

    model = Llama(c).to(device)
    n_params = parameter_count(model)
    print(f"model: {n_params / 1e6:.2f}M parameters, {json.dumps(c)}", flush=True)
    assert n_params <= 12_000_000, "the demo model must stay at or under 12M parameters"
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95), eps=1e-8,
                            fused=device.type == "cuda")
    step_fn = model if (args.no_compile or args.smoke) else torch.compile(model)

    data = Batches(tok, docs, corpus, args.seq_len, args.batch, args.task_share, args.seed)
    loader = torch.utils.data.DataLoader(data, batch_size=None, num_workers=args.workers,
                                         multiprocessing_context="fork" if args.workers else None,
                                         pin_memory=device.type == "cuda",
                                         prefetch_factor=4 if args.workers else None,
                                         persistent_workers=bool(args.workers))
    budget = args.minutes * 60
    if args.total_minutes > 0:
        budget = max(30.0, min(budget, args.total_minutes * 60 - 90 - (time.time() - T0)))
        print(f"optimisation budget {budget / 60:.1f} min (--total-minutes)", flush=True)
    warmup = 150
    t_start, step, tokens = time.time(), 0, 0
    log = []
    model.train()
    for x, mask in loader:
        elapsed = time.time() - t_start
        if (args.smoke and step >= 2) or (not args.smoke and elapsed > budget):
            break
        # Time-based schedule: linear warm-up, then cosine to 10% at the end of the budget.
        frac = min(1.0, elapsed / budget)
        lr = args.lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        x = x.to(device, non_blocking=True)
        mask = mask.to(device, non_blocking=True)
        inp, tgt, tmask = x[:, :-1], x[:, 1:], mask[:, 1:]
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                            enabled=device.type == "cuda"):
            logits = step_fn(inp)
        nll = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), tgt.reshape(-1),
                              reduction="none").view_as(tgt)
        lm = nll.mean()
        n_ans = tmask.sum()
        ans = (nll * tmask).sum() / n_ans.clamp(min=1)
        loss = lm + ans  # the answer tokens are few: their own term makes retrieval matter
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += inp.numel()
        if step % 50 == 0 or step <= 3 or args.smoke:
            el = time.time() - t_start
            rec = dict(step=step, minutes=round(el / 60, 2), lr=lr, loss=round(lm.item(), 4),
                       answer_loss=round(ans.item(), 4), grad_norm=round(float(gnorm), 3),
                       tokens_per_s=round(tokens / max(el, 1e-9)))
            log.append(rec)
            print(json.dumps(rec), flush=True)
    train_s = time.time() - t_start
    print(f"trained {step} steps, {tokens / 1e6:.0f}M tokens in {train_s / 60:.1f} min", flush=True)

    model.eval()
    check = passkey_check(model, tok, device, [512] if args.smoke else [1024, 4096, 8000],
                          per_length=1 if args.smoke else 4)
    print("pass-key accuracy (dense, this script):", check, flush=True)
    export(model, c, work / "tokenizer.model", export_dir)
    (work / "train_log.json").write_text(json.dumps(
        {"config": c, "parameters": n_params, "steps": step, "tokens": tokens,
         "train_seconds": train_s, "passkey": check, "log": log,
         "args": vars(args), "torch": torch.__version__,
         "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"},
        indent=2) + "\n")
    transformers_check(export_dir, model, tok, device)


if __name__ == "__main__":
    main()
